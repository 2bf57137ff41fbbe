"""The AWS deployment of hotshard as a CDK v2 app: one module per stack (docs/DEPLOY.md)."""
