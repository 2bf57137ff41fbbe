"""Where snapshots live: small ones in Redis, large ones in S3. Which snapshot a book
resumes from is named by its partition's checkpoint (hotshard.recovery), never looked up
as "the latest of the symbol".

Locations are `redis:<key>`, `s3://<bucket>/<key>` or (a local cluster's stand-in for
the bucket: `--snapshot-dir`) `file://<path>`; `fetch` reads any. Each snapshot
is stored under its own key (symbol, seq, offset), so a location handed out (to a
migration, say) stays readable after newer snapshots are taken; the engine `retire`s a
Redis copy once its checkpoint names a newer one (it expires after `REDIS_RETAIN_S`), S3
ones expire by the bucket's lifecycle rule. `location_for` tells where a snapshot will go
before its bytes exist, so a Fence can answer with it while the snapshot is written off
the loop.
"""

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from engine.service.errors import SnapshotMissingError, SnapshotRefusedError
from hotshard import names
from hotshard.reasons import Reason
from hotshard.recovery import SnapshotRecord, write_snapshot_data

REDIS_RETAIN_S = 600
SWEEP_EVERY_S = 60
RETIRED_SUFFIX = ".retired"
PARTIAL_SUFFIX = ".partial"
S3_PREFIX = "snapshots/"


@dataclass(slots=True)
class SnapshotStore:
    redis: redis.Redis
    s3: Any | None = None  # a boto3 S3 client
    bucket: str = ""
    s3_threshold: int = 1 << 20
    instance: str = ""
    directory: Path | None = None
    """A local cluster's bucket: snapshots above `s3_threshold` are files here (by
    reference, like S3), never values in its Redis, whose AOF a 17 MB value every few
    seconds stalls for every other client (p99 153 ms, max 1.1 s for a GET, measured)."""
    _swept: float = field(default=float("-inf"))

    def location_for(self, symbol: str, *, seq: int, input_offset: int, estimate: int) -> str:
        """Where `put` stores a snapshot of about `estimate` bytes with this seq and offset."""
        big = estimate > self.s3_threshold
        if self.s3 is not None and self.bucket and big:
            return f"s3://{self.bucket}/{S3_PREFIX}{symbol}/{seq:020d}-{input_offset}.snap"
        if self.directory is not None and big:
            name = f"{seq:020d}-{input_offset}.snap"
            return f"file://{self.directory / symbol_directory(symbol) / name}"
        return "redis:" + names.REDIS_SNAPSHOT_DATA.format(symbol, f"{seq}-{input_offset}")

    def put(
        self,
        symbol: str,
        data: bytes,
        *,
        partition: int,
        input_offset: int,
        seq: int,
        owner_epoch: int = 0,
        location: str = "",
    ) -> SnapshotRecord:
        """Store a snapshot (at `location` if given, else where its size says); returns its
        record. Refused (SnapshotRefusedError) unless this instance owns `partition`."""
        location = location or self.location_for(
            symbol, seq=seq, input_offset=input_offset, estimate=len(data)
        )
        if location.startswith("s3://"):
            if self.s3 is None:
                raise SnapshotRefusedError(Reason.CORRUPT_SNAPSHOT, "no S3 client configured")
            self._owned(symbol, partition)
            bucket, _, key = location.removeprefix("s3://").partition("/")
            self.s3.put_object(Bucket=bucket, Key=key, Body=data)
            self._owned(symbol, partition)
        elif location.startswith("file://"):
            self._owned(symbol, partition)
            path = Path(location.removeprefix("file://"))
            # Written again (a restarted engine snapshots at the same seq and offset, and a
            # checkpoint names it once more): a mark from when it was retired must not
            # have the sweep delete it. Dropped before the write, so no sweep between.
            _retired_mark(path).unlink(missing_ok=True)
            _write_file(path, data)
            self._owned(symbol, partition)
        elif not write_snapshot_data(
            self.redis,
            self.instance,
            partition,
            data_key=location.removeprefix("redis:"),
            data=data,
        ):
            self._refused(symbol, partition)
        return SnapshotRecord(
            symbol,
            location,
            partition,
            input_offset,
            seq,
            len(data),
            self.instance,
            int(time.time() * 1000),
            owner_epoch,
        )

    def _owned(self, symbol: str, partition: int) -> None:
        if not write_snapshot_data(self.redis, self.instance, partition):
            self._refused(symbol, partition)

    def _refused(self, symbol: str, partition: int) -> None:
        raise SnapshotRefusedError(
            Reason.PARTITION_NOT_OWNED, f"{symbol}: partition {partition} is no longer owned here"
        )

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
        if location.startswith("file://"):
            try:
                return Path(location.removeprefix("file://")).read_bytes()
            except FileNotFoundError as exc:
                raise SnapshotMissingError(Reason.CORRUPT_SNAPSHOT, f"no {location}") from exc
        raise SnapshotMissingError(Reason.CORRUPT_SNAPSHOT, f"unknown location {location!r}")

    def retire(self, location: str) -> None:
        """A snapshot no checkpoint names any more: let a Redis copy expire."""
        if location.startswith("redis:"):
            self.redis.expire(location.removeprefix("redis:"), REDIS_RETAIN_S)
        elif location.startswith("file://"):
            # Kept as long as a Redis copy would be (a migration may hold its location).
            # The mark is a file beside it, so a file retired by an engine that was killed
            # or restarted since is still deleted in time, by whichever engine sweeps next.
            _retired_mark(Path(location.removeprefix("file://"))).touch()
            self._sweep()

    def _sweep(self) -> None:
        """Delete the files retired more than REDIS_RETAIN_S ago, and the parts of files a
        writer killed mid-write left (as old: no write takes that long), at most once a
        minute."""
        now = time.time()
        if self.directory is None or now - self._swept < min(SWEEP_EVERY_S, REDIS_RETAIN_S):
            return
        self._swept = now
        for mark in self.directory.glob(f"*/*{RETIRED_SUFFIX}"):
            try:
                if mark.stat().st_mtime > now - REDIS_RETAIN_S:
                    continue
            except FileNotFoundError:  # another engine swept it
                continue
            mark.with_name(mark.name.removesuffix(RETIRED_SUFFIX)).unlink(missing_ok=True)
            mark.unlink(missing_ok=True)
        for partial in self.directory.glob(f"*/*{PARTIAL_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):  # renamed or swept meanwhile
                if partial.stat().st_mtime <= now - REDIS_RETAIN_S:
                    partial.unlink()


def symbol_directory(symbol: str) -> str:
    """A symbol's folder in the snapshot directory: "@" + symbol, so the symbols "." and
    ".." (valid ids) name folders inside it, never the directory itself or its parent."""
    return "@" + symbol


def _retired_mark(path: Path) -> Path:
    return path.with_name(path.name + RETIRED_SUFFIX)


def _write_file(path: Path, data: bytes) -> None:
    """Whole or not at all: a reader never sees a part (written aside, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    partial.write_bytes(data)
    os.replace(partial, path)


def s3_client(region: str, endpoint_url: str = "") -> Any:
    import boto3  # type: ignore[import-untyped]  # noqa: PLC0415 - only with a bucket

    return boto3.client("s3", region_name=region, endpoint_url=endpoint_url or None)
