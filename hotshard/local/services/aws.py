"""A local AWS endpoint as the processes that use it see it: URL, credentials, region."""

from dataclasses import dataclass, field
from typing import Any

from hotshard.local.services.process import Process


@dataclass
class AwsEndpoint:
    """A local endpoint of AWS APIs (moto's server, rclone's S3) and the credentials it takes."""

    url: str
    access_key: str
    secret_key: str
    region: str
    process: Process
    buckets: list[str] = field(default_factory=list)

    def client(self, service: str = "s3") -> Any:
        """A boto3 client of `service` at this endpoint."""
        import boto3  # type: ignore[import-untyped]  # noqa: PLC0415

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def env(self) -> dict[str, str]:
        """Environment for processes that talk to it (boto3 and Tansu's object store)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT": self.url,
            "AWS_ALLOW_HTTP": "true",
        }
