"""Storage: the S3 bucket that holds engine snapshots (DESIGN §3), and its access logs."""

from __future__ import annotations

from aws_cdk import Duration, Environment, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import InfraConfig
from infra.constructs.nag import acknowledge, acknowledge_wildcards

SNAPSHOT_PREFIX = "snapshots/"


class StorageStack(Stack):
    """Encrypted, versioned, private snapshot bucket whose old snapshots expire."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: InfraConfig, env: Environment
    ) -> None:
        super().__init__(scope, construct_id, env=env, description="hotshard snapshot storage")
        access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            access_logs,
            "AwsSolutions-S1",
            "this bucket is the access-log target; logging it into itself would loop",
        )
        # A fixed name keeps IAM grants on it free of cross-stack tokens.
        self.bucket_name = f"hotshard-snapshots-{self.account}-{self.region}"
        self.snapshots = s3.Bucket(
            self,
            "Snapshots",
            bucket_name=self.bucket_name,
            encryption=s3.BucketEncryption.S3_MANAGED,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="snapshots/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-old-snapshots",
                    prefix=SNAPSHOT_PREFIX,
                    expiration=Duration.days(config.snapshot_retention_days),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

    def grant_snapshots(self, role: iam.IRole) -> None:
        """Read, write and delete objects under snapshots/ only; list only that prefix."""
        objects = f"arn:{self.partition}:s3:::{self.bucket_name}/{SNAPSHOT_PREFIX}*"
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                ],
                resources=[objects],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[f"arn:{self.partition}:s3:::{self.bucket_name}"],
                conditions={"StringLike": {"s3:prefix": [f"{SNAPSHOT_PREFIX}*"]}},
            )
        )
        acknowledge_wildcards(
            role,
            [objects],
            "snapshot keys are created at run time, one per symbol and version, all under "
            "the snapshots/ prefix of the one snapshot bucket",
        )
