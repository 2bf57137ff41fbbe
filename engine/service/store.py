"""Where snapshots live: small ones in Redis, large ones in S3, the latest location of each
symbol recorded in Redis (`snapshot:{SYMBOL}`, hotshard.recovery).

Locations are `redis:<key>` or `s3://<bucket>/<key>`; `fetch` reads either. Each snapshot
is stored under its own key (symbol and seq), so a location handed out (to a migration,
say) stays readable after newer snapshots are taken; Redis copies that are no longer the
latest expire after `REDIS_RETAIN_S`, S3 ones by the bucket's lifecycle rule.
"""

import time
from dataclasses import dataclass
from typing import Any

import redis

from engine.service.errors import SnapshotMissingError, SnapshotRefusedError
from hotshard import names
from hotshard.reasons import Reason
from hotshard.recovery import SnapshotRecord, read_snapshot_record, write_snapshot_record

REDIS_RETAIN_S = 600
S3_PREFIX = "snapshots/"


@dataclass(slots=True)
class SnapshotStore:
    redis: redis.Redis
    s3: Any | None = None  # a boto3 S3 client
    bucket: str = ""
    s3_threshold: int = 1 << 20
    instance: str = ""

    def put(
        self, symbol: str, data: bytes, *, partition: int, input_offset: int, seq: int
    ) -> SnapshotRecord:
        """Store a snapshot and record it as the symbol's latest; returns the record."""
        previous = read_snapshot_record(self.redis, symbol)
        taken_ms = int(time.time() * 1000)
        common = {
            "symbol": symbol,
            "partition": partition,
            "input_offset": input_offset,
            "seq": seq,
            "size": len(data),
            "instance": self.instance,
            "taken_ms": taken_ms,
        }
        if self.s3 is not None and self.bucket and len(data) > self.s3_threshold:
            key = f"{S3_PREFIX}{symbol}/{seq:020d}-{input_offset}.snap"
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
            record = SnapshotRecord(location=f"s3://{self.bucket}/{key}", **common)  # type: ignore[arg-type]
            self._record(record)
        else:
            key = names.REDIS_SNAPSHOT_DATA.format(symbol, f"{seq}-{input_offset}")
            record = SnapshotRecord(location=f"redis:{key}", **common)  # type: ignore[arg-type]
            self._record(record, data_key=key, data=data)
        if previous is not None and previous.location != record.location:
            self._retire(previous.location)
        return record

    def _record(self, record: SnapshotRecord, *, data_key: str = "", data: bytes = b"") -> None:
        if not write_snapshot_record(self.redis, record, data_key=data_key, data=data):
            raise SnapshotRefusedError(
                Reason.PARTITION_NOT_OWNED,
                f"{record.symbol}: partition {record.partition} is no longer owned here",
            )

    def latest(self, symbol: str) -> SnapshotRecord | None:
        return read_snapshot_record(self.redis, symbol)

    def fetch(self, location: str) -> bytes:
        if location.startswith("redis:"):
            data = self.redis.get(location.removeprefix("redis:"))
            if data is None:
                raise SnapshotMissingError(Reason.CORRUPT_SNAPSHOT, f"nothing at {location}")
            return data  # type: ignore[return-value]
        if location.startswith("s3://"):
            if self.s3 is None:
                raise SnapshotMissingError(Reason.CORRUPT_SNAPSHOT, "no S3 client configured")
            bucket, _, key = location.removeprefix("s3://").partition("/")
            try:
                body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
            except self.s3.exceptions.NoSuchKey as exc:
                raise SnapshotMissingError(Reason.CORRUPT_SNAPSHOT, f"no {location}") from exc
            return body.read()  # type: ignore[no-any-return]
        raise SnapshotMissingError(Reason.CORRUPT_SNAPSHOT, f"unknown location {location!r}")

    def _retire(self, location: str) -> None:
        if location.startswith("redis:"):
            self.redis.expire(location.removeprefix("redis:"), REDIS_RETAIN_S)


def s3_client(region: str, endpoint_url: str = "") -> Any:
    import boto3  # type: ignore[import-untyped]  # noqa: PLC0415 - only with a bucket

    return boto3.client("s3", region_name=region, endpoint_url=endpoint_url or None)
