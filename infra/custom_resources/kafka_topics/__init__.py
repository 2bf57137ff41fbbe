"""Creates the hotshard Kafka topics on MSK (IAM auth) for CloudFormation."""
