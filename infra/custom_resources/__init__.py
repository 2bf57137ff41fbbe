"""Handlers of CloudFormation custom resources; deployed as Lambda code, not CDK."""
