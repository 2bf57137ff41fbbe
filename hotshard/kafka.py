"""One Kafka client configuration for every process: plaintext locally, IAM on MSK.

`client_config(brokers, auth=...)` is the only place that knows how to reach the broker;
the engine, the router, the stream handler and the tests add their role's settings on top
(`consumer_config`, `producer_config`). MSK IAM is a switch (`auth="msk-iam"`), not a second
code path: it adds SASL_SSL + OAUTHBEARER with `oauth_cb`, which signs a token with
aws-msk-iam-sasl-signer-python.

The signer returns the token's expiry in MILLISECONDS since the epoch; confluent-kafka's
oauth_cb must return it in SECONDS (a float): `msk_oauth_token` converts.
"""

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hotshard.names import TOPICS

AUTH_NONE = "none"
AUTH_MSK_IAM = "msk-iam"
AUTH_MODES = (AUTH_NONE, AUTH_MSK_IAM)

TokenSigner = Callable[[str], tuple[str, int]]
"""region -> (token, expiry in ms since the epoch): MSKAuthTokenProvider.generate_auth_token."""


def msk_oauth_token(region: str, signer: TokenSigner | None = None) -> tuple[str, float]:
    """A fresh MSK IAM token and its expiry in seconds since the epoch (for oauth_cb)."""
    if signer is None:
        from aws_msk_iam_sasl_signer import (  # type: ignore[import-untyped]  # noqa: PLC0415
            MSKAuthTokenProvider,
        )

        signer = MSKAuthTokenProvider.generate_auth_token
    token, expiry_ms = signer(region)
    return token, expiry_ms / 1000.0


def client_config(brokers: str, *, auth: str = AUTH_NONE, region: str = "") -> dict[str, Any]:
    if auth not in AUTH_MODES:
        raise ValueError(f"Kafka auth must be one of {', '.join(AUTH_MODES)}, got {auth!r}")
    config: dict[str, Any] = {"bootstrap.servers": brokers, "client.dns.lookup": "use_all_dns_ips"}
    if auth == AUTH_MSK_IAM:
        if not region:
            raise ValueError("MSK IAM auth needs an AWS region")
        config.update(
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": "OAUTHBEARER",
                "oauth_cb": lambda _config: msk_oauth_token(region),
            }
        )
    return config


ENV_FETCH_WAIT_MIN_MS = "HOTSHARD_KAFKA_FETCH_WAIT_MIN_MS"
"""A floor under every consumer's fetch.wait.max.ms (consumer_config), for a broker slow to
answer a fetch: Tansu 0.6 on s3:// storage lists a partition's batches in its object store
for every fetch and gives the partition up, records found or not, once the fetch's max wait
has passed; with a LIST slower than the wait (50-130 ms at load 20-30 against 10-20 ms
waits) a consumer never gets a record (measured: the engine stood at offset 0 while its
lag grew). Set by `fetch_wait_floor` for the processes of a durable broker."""


@contextlib.contextmanager
def fetch_wait_floor(ms: int) -> Iterator[None]:
    """ENV_FETCH_WAIT_MIN_MS = `ms` in this process (and the processes it starts) for the
    block; 0 leaves the environment alone."""
    if ms <= 0:
        yield
        return
    previous = os.environ.get(ENV_FETCH_WAIT_MIN_MS)
    os.environ[ENV_FETCH_WAIT_MIN_MS] = str(ms)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENV_FETCH_WAIT_MIN_MS, None)
        else:
            os.environ[ENV_FETCH_WAIT_MIN_MS] = previous


def fetch_wait(ms: int) -> int:
    """`ms`, raised to the ENV_FETCH_WAIT_MIN_MS floor if one is set."""
    floor = os.environ.get(ENV_FETCH_WAIT_MIN_MS, "")
    return max(ms, int(floor)) if floor.isdigit() else ms


def consumer_config(
    base: dict[str, Any],
    *,
    group_id: str,
    fetch_wait_max_ms: int = 20,
    offset_reset: str = "earliest",
    fetch_min_bytes: int = 1,
) -> dict[str, Any]:
    """A consumer for manual assignment: no auto commit, no offset store, reads from the
    start when it has no position. `fetch_wait_max_ms` bounds latency on brokers that do
    not wake a waiting fetch (Tansu: latency ~ wait / 4). `offset_reset="error"` (the
    engine): a position out of range is reported as an error, never silently rewound or
    skipped. The wait is raised to the ENV_FETCH_WAIT_MIN_MS floor if one is set."""
    return {
        **base,
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": offset_reset,
        "fetch.wait.max.ms": fetch_wait(fetch_wait_max_ms),
        "fetch.min.bytes": fetch_min_bytes,
        "enable.partition.eof": False,
    }


def consume_batch(
    consumer: Any, max_records: int, timeout_s: float, batch_wait_s: float = 0.0
) -> list[Any]:
    """Up to `max_records` messages, returned as soon as the first one is there.

    librdkafka's `consume(n, timeout)` waits the whole timeout unless n records come: a loop
    that calls it with a 5 ms timeout holds every record that arrives early in the wait
    for the rest of it (at 75,000 orders/s, ~375 records per turn, each waiting up to 5 ms).
    Here: take what is buffered without waiting; if nothing is, wait up to `timeout_s` for
    ONE record; then take what else is buffered, waiting at most `batch_wait_s` more for
    the batch to fill (0: only what is already there). Under a backlog the first call
    returns a full batch, as before. Error messages are returned like records (the
    caller's `m.error()`). Only `consumer.consume` is called (a Consumer or a stand-in)."""
    messages: list[Any] = consumer.consume(max_records, 0)
    if not messages:
        if timeout_s <= 0:
            return []
        messages = consumer.consume(1, timeout_s)
        if not messages:
            return []
    if len(messages) < max_records:
        more = consumer.consume(max_records - len(messages), batch_wait_s)
        if more:
            messages.extend(more)
    return messages


def producer_config(base: dict[str, Any], *, linger_ms: float = 2.0) -> dict[str, Any]:
    """Idempotent, acks=all, ordered per partition: what the engine's events need."""
    return {
        **base,
        "enable.idempotence": True,
        # a record that times out must fail the producer, not leave a hole that later
        # records jump over (readers would take the hole for a gap, the replay for repeats)
        "enable.gapless.guarantee": True,
        "acks": "all",
        "linger.ms": linger_ms,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "compression.type": "lz4",
    }


def stale_ack(offset: int, floor: int) -> bool:
    """Is an acknowledgement at `offset` one no log can give? `floor` is the highest offset
    of the record's partition acknowledged to its producer before the record was handed to
    it: a record appended later lands beyond it. Measured on Tansu 0.6 on s3:// storage,
    restarted while a batch was on its way: the producer's retry was acknowledged at offset
    0, another record's, and the record was never stored (docs/FAULTS.md). Such an answer
    says nothing about where, or whether, the record is: the router answers it in doubt
    (StaleOffsetError), the engine stops for its restart to publish the events again."""
    return offset <= floor


def ack_mark(mark: int, offset: int, floor: int) -> int:
    """The partition's mark (the `floor` of the records made from now on) after an
    acknowledgement at `offset` of a record made when it was `floor`: a true one raises it,
    a stale one (`stale_ack`) lowers it to its offset, so a replaced log (offsets from 0
    again) is in doubt once per partition, not for good."""
    if offset <= floor:
        return offset
    return offset if offset > mark else mark


def warm_producer(producer: Any, topics: Sequence[str], timeout_s: float = 2.0) -> bool:
    """Ready a new idempotent producer before its first record: True when the broker
    answered a metadata request for each of `topics` within `timeout_s` in all.

    librdkafka asks for the producer id as it is created, finds no connection up yet and
    asks again on a 500 ms timer, so a fresh producer's first records waited 0.5-1.0 s
    (measured on Tansu: created -> first acknowledgement 503-505 ms in 12 of 12 producers;
    1.15 s for the first orders of `make demo`). Metadata answered over the connection it
    opens moves that on at once (57 ms in 12 of 12, the second topic's first record 2-3 ms),
    and leaves each topic's leaders known, so a first record does not wait for them. False
    (the broker did not answer in time) changes nothing: the producer works as before."""
    from confluent_kafka import KafkaException  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    for topic in topics:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            producer.list_topics(topic, timeout=remaining)
        except KafkaException:
            return False
    return True


def create_topics(admin: Any, partitions: int, topics: tuple[str, ...] = TOPICS) -> None:
    """Create the missing hotshard topics, each with `partitions` partitions (a symbol keeps
    one partition number from input to events). Producing to a missing topic on Tansu
    creates it silently with defaults, so processes create topics explicitly first."""
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]  # noqa: PLC0415

    existing = set(admin.list_topics(timeout=10).topics)
    missing = [NewTopic(t, num_partitions=partitions) for t in topics if t not in existing]
    if not missing:
        return
    for future in admin.create_topics(missing, request_timeout=10).values():
        future.result(timeout=15)


def topic_id(admin: Any, topic: str, timeout_s: float = 10.0) -> str:
    """The broker's id of `topic` (Metadata v10+ / DescribeTopics): a log's identity. A
    broker that lost its data and made the topic again gives it another id, while its
    offsets restart at 0 (Tansu on memory storage: measured; durable s3:// storage keeps
    the id across a restart). "" when the broker reports none (all zeros: too old).
    Raises KafkaException when the topic cannot be described (e.g. it does not exist)."""
    from confluent_kafka import TopicCollection  # noqa: PLC0415

    futures = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout_s)
    try:
        found = futures[topic].result(timeout=timeout_s + 5)
    finally:
        # a failed Future keeps its exception, whose traceback holds this frame, so
        # `futures` and `admin`: a cycle that kept the AdminClient (and its reconnects to a
        # broker that stopped) alive until a garbage collection happened to run
        futures.clear()
    uuid = found.topic_id
    text = "" if uuid is None else str(uuid)
    return "" if text in ("", "AAAAAAAAAAAAAAAAAAAAAA") else text
