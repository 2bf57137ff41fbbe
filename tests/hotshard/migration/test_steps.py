"""Migration steps (hotshard.migration.steps) against a real Redis and the real fleet,
with the engines' answers given: a source without the book is nothing to unfence, the
target goes back to the pool whatever the source answers, an alarm's execution does not
move a symbol within the cooldown after its last migration ended (another hot one may),
and a PENDING_END marker is written once however its writer died and was retried (a real
broker)."""
# mypy: disable-error-code="arg-type,return-value"

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import redis

from hotshard import names, route
from hotshard.migration import steps
from hotshard.migration.errors import EngineCallFailed, EngineUnavailable, NoHotSymbol
from hotshard.migration.fleet import AutoScalingFleet
from hotshard.migration.settings import MigrationSettings
from hotshard.reasons import Reason
from hotshard.v1 import control_pb2

EXECUTION = "arn:execution:HOT-1"


@dataclass
class Engine:
    """An EngineControl that answers Unfence with `unfence` (an error or a reply) and
    Remove with NOT_FOUND (no shadow: the Follow never ran)."""

    unfence_answer: Exception | control_pb2.UnfenceReply
    calls: list[str] = field(default_factory=list)

    def unfence(self, symbol: str, epoch: int, pending: Any = None) -> control_pb2.UnfenceReply:
        self.calls.append(f"Unfence {symbol} {epoch}")
        if isinstance(self.unfence_answer, Exception):
            raise self.unfence_answer
        return self.unfence_answer

    def remove(self, symbol: str) -> control_pb2.RemoveReply:
        self.calls.append(f"Remove {symbol}")
        raise EngineCallFailed("Remove", Reason.UNKNOWN_SYMBOL, "no book", "NOT_FOUND")

    def close(self) -> None:
        pass


class NoBroker:
    def close(self) -> None:
        pass


def _state() -> dict[str, Any]:
    return {
        "migration": {
            "symbol": "HOT",
            "strategy": "pre-copy",
            "source": {"instance": "e-0", "address": "src:1", "partition": 0},
            "epoch": 1,
            "execution": EXECUTION,
        },
        "target": {"instance": "w-0", "address": "dst:1", "partition": 4, "scaled_out": False},
        "error": {"Error": "EngineCallFailed"},
    }


def _context(
    r: redis.Redis, source: Engine, target: Engine, settings: MigrationSettings | None = None
) -> steps.Context:
    for instance, address, partition in (("e-0", "src:1", "0"), ("w-0", "dst:1", "4")):
        r.hset(
            names.REDIS_ENGINE.format(instance),
            mapping={"address": address, "partitions": partition},
        )
        r.sadd(names.REDIS_ENGINES, instance)
    route.list_symbol_at(r, "HOT", 0, "e-0")
    r.set(names.REDIS_FLEET_CLAIM.format("w-0"), EXECUTION)
    engines = {"src:1": source, "dst:1": target}
    return steps.Context(
        settings or MigrationSettings(),
        r,
        AutoScalingFleet(r, spare=(4,)),
        NoBroker(),
        EXECUTION,
        engine=engines.__getitem__,
    )


@dataclass
class Shadowing:
    """A target whose Stats shows the shadow of HOT caught up (lag 0), its restored orders
    indexed as `unindexed` says, one answer per poll (the last one again after)."""

    unindexed: list[int]
    polls: int = 0

    def stats(self) -> control_pb2.StatsReply:
        left = self.unindexed[min(self.polls, len(self.unindexed) - 1)]
        self.polls += 1
        reply = control_pb2.StatsReply()
        reply.shadows.add(symbol="HOT", source_partition=0, next_offset=10, lag=0, unindexed=left)
        return reply

    def close(self) -> None:
        pass


@dataclass
class Checkpointing(Engine):
    """A source whose Stats says a periodic checkpoint is under way as `busy` says, one
    answer per poll (the last one again after); an Exception: it does not answer."""

    busy: list[bool | Exception] = field(default_factory=list)
    polls: int = 0

    def stats(self) -> control_pb2.StatsReply:
        answer = self.busy[min(self.polls, len(self.busy) - 1)]
        self.polls += 1
        if isinstance(answer, Exception):
            raise answer
        return control_pb2.StatsReply(checkpointing=answer)


@pytest.mark.integration
def test_the_catch_up_waits_for_the_shadows_index(r: redis.Redis) -> None:
    # run 15 (issue 11): at 1M the switch's Promote queued 48-59 ms on the target's loop,
    # behind the slices indexing the shadow's million restored orders (10-120 ms each);
    # before, the step ended on the first poll with the lag small
    target = Shadowing([40_000, 20_000, 0])
    ctx = _context(r, Checkpointing(control_pb2.UnfenceReply(), busy=[False]), target)
    ctx.sleep = lambda _s: None
    done = steps.wait_for_catch_up(ctx, _state())
    assert target.polls == 3 and done["unindexed"] == 0 and done["lag"] == 0


@pytest.mark.integration
def test_the_catch_up_does_not_wait_for_the_index_or_a_checkpoint_past_its_wait(
    r: redis.Redis,
) -> None:
    # never indexed, never done checkpointing: the switch goes on, only slower
    source = Checkpointing(control_pb2.UnfenceReply(), busy=[True])
    target = Shadowing([40_000])
    ctx = _context(r, source, target, MigrationSettings(catch_up_wait_s=0.0))
    ctx.sleep = lambda _s: None
    done = steps.wait_for_catch_up(ctx, _state())
    assert done["unindexed"] == 40_000 and target.polls <= 2


@pytest.mark.integration
def test_the_catch_up_waits_for_the_sources_periodic_checkpoint(r: redis.Redis) -> None:
    # run 15: a 1M pause (156 ms, the Fence 82 ms on the engine) met the source's periodic
    # checkpoint, begun before the move's Snapshot held new ones; before, no wait for it
    source = Checkpointing(control_pb2.UnfenceReply(), busy=[True, True, False])
    target = Shadowing([0])
    ctx = _context(r, source, target)
    ctx.sleep = lambda _s: None
    done = steps.wait_for_catch_up(ctx, _state())
    assert source.polls == 3 and target.polls == 3 and not done["checkpointing"]


@pytest.mark.integration
def test_the_catch_up_does_not_wait_for_a_source_that_does_not_answer(r: redis.Redis) -> None:
    source = Checkpointing(
        control_pb2.UnfenceReply(), busy=[EngineUnavailable("Stats on src:1: UNAVAILABLE")]
    )
    ctx = _context(r, source, Shadowing([0]))
    assert not steps.wait_for_catch_up(ctx, _state())["checkpointing"]  # the Fence finds out


@pytest.mark.integration
def test_a_source_without_the_book_has_nothing_to_unfence(r: redis.Redis) -> None:
    no_book = EngineCallFailed("Unfence", Reason.UNKNOWN_SYMBOL, "no book for HOT", "NOT_FOUND")
    source, target = Engine(no_book), Engine(control_pb2.UnfenceReply())
    result = steps.rollback(_context(r, source, target), _state())
    assert (result["route"], result["source_book"], result["replayed"]) == ("none", False, 0)
    assert source.calls == ["Unfence HOT 1"] and target.calls == ["Remove HOT"]
    assert r.get(names.REDIS_FLEET_CLAIM.format("w-0")) is None  # back in the pool
    assert r.get(names.REDIS_MIGRATION_ENDED.format("HOT")) is not None  # its cooldown starts


@pytest.mark.integration
def test_the_target_goes_back_even_when_the_unfence_fails(r: redis.Redis) -> None:
    refused = EngineCallFailed("Unfence", Reason.SYMBOL_FENCED, "busy", "FAILED_PRECONDITION")
    source, target = Engine(refused), Engine(control_pb2.UnfenceReply())
    with pytest.raises(EngineCallFailed, match="SYMBOL_FENCED"):
        steps.rollback(_context(r, source, target), _state())
    assert target.calls == ["Remove HOT"]
    assert r.get(names.REDIS_FLEET_CLAIM.format("w-0")) is None


@pytest.mark.integration
def test_an_unfenced_source_answers_what_it_replayed(r: redis.Redis) -> None:
    source = Engine(control_pb2.UnfenceReply(replayed=3, held=2))
    result = steps.rollback(_context(r, source, Engine(control_pb2.UnfenceReply())), _state())
    assert (result["replayed"], result["held"], result["source_book"]) == (3, 2, True)
    assert r.get(names.REDIS_FLEET_CLAIM.format("w-0")) is None


@dataclass
class Loaded:
    """An engine that serves `rates` (symbol -> orders/s) on `partition`."""

    partition: int
    rates: dict[str, float]

    def health(self) -> control_pb2.HealthReply:
        return control_pb2.HealthReply(serving=True, symbols=list(self.rates))

    def stats(self) -> control_pb2.StatsReply:
        symbols = [
            control_pb2.SymbolStats(symbol=s, orders_per_second=v, partition=self.partition)
            for s, v in self.rates.items()
        ]
        return control_pb2.StatsReply(symbols=symbols, cpu_percent=50)

    def close(self) -> None:
        pass


@pytest.mark.integration
def test_an_alarm_within_a_symbols_cooldown_moves_another_hot_one_or_nothing(
    r: redis.Redis,
) -> None:
    settings = MigrationSettings(cooldown_s=180, rate_alarm_threshold=100)
    ctx = _context(r, Engine(control_pb2.UnfenceReply()), Engine(control_pb2.UnfenceReply()))
    ctx = replace(ctx, settings=settings, clock_ms=lambda: 1_000_000)
    route.list_symbol_at(r, "BEE", 4, "w-0")
    engines = {"src:1": Loaded(0, {"HOT": 900, "AAA": 5}), "dst:1": Loaded(4, {"BEE": 40})}
    ctx = replace(ctx, engine=engines.__getitem__)
    alarm = {"source": "aws.cloudwatch", "detail": {"alarmName": "SymbolRateHigh"}}
    r.set(names.REDIS_MIGRATION_ENDED.format("HOT"), str(1_000_000 - 179_000))
    with pytest.raises(NoHotSymbol, match="cooldown") as refused:  # BEE is below 100/s
        steps.detect_hot_symbol(ctx, alarm)
    assert refused.value.reason == Reason.MIGRATION_COOLDOWN
    # A move asked for by hand is not the alarm's: no cooldown.
    assert steps.detect_hot_symbol(ctx, {"symbol": "HOT"})["symbol"] == "HOT"
    # Another symbol above the alarm's threshold, on another engine: it moves meanwhile.
    engines["dst:1"].rates = {"BEE": 400, "CEE": 1}
    assert steps.detect_hot_symbol(ctx, alarm)["symbol"] == "BEE"
    r.set(names.REDIS_MIGRATION_ENDED.format("HOT"), str(1_000_000 - 180_000))
    assert steps.detect_hot_symbol(ctx, alarm)["symbol"] == "HOT"  # past its cooldown


class Books:
    """An engine that serves and holds no book."""

    def health(self) -> control_pb2.HealthReply:
        return control_pb2.HealthReply(serving=True)

    def stats(self) -> control_pb2.StatsReply:
        return control_pb2.StatsReply()

    def close(self) -> None:
        pass


@pytest.mark.integration
def test_a_retried_end_marker_finds_the_one_written_before_it_died(
    r: redis.Redis, broker: Any
) -> None:
    """The attempt announced the marker, wrote it and died before recording its offset: the
    retry records that marker's offset. Writing a second one would have the replay stop at
    the first while routers acknowledged records up to the second: acknowledged, lost."""
    from hotshard.kafka import client_config  # noqa: PLC0415
    from hotshard.migration.markers import Broker  # noqa: PLC0415

    markers = Broker(client_config(broker.bootstrap))
    ctx = replace(
        _context(r, Engine(control_pb2.UnfenceReply()), Engine(control_pb2.UnfenceReply()))
    )
    ctx = replace(ctx, broker=markers)
    topic, key = names.TOPIC_PENDING_ORDERS, names.REDIS_PENDING_END.format("HOT", 7)
    try:
        start = markers.end_offset(topic, 2)
        r.set(key, f"{topic}/2/@{start}")
        first = markers.write_end_marker(topic, 2, "HOT", 7)  # then the task died
        steps.end_marker(ctx, topic, 2, "HOT", 7)
        assert r.get(key) == f"{topic}/2/{first}".encode()
        steps.end_marker(ctx, topic, 2, "HOT", 7)  # done: nothing more
        assert markers.find_end_marker(topic, 2, "HOT", 7, first + 1) is None
        # Died after announcing, before writing: the retry writes it (once).
        other = names.REDIS_PENDING_END.format("HOT", 8)
        r.set(other, f"{topic}/2/@{markers.end_offset(topic, 2)}")
        steps.end_marker(ctx, topic, 2, "HOT", 8)
        written = int(r.get(other).decode().rpartition("/")[2])  # type: ignore[union-attr]
        assert markers.find_end_marker(topic, 2, "HOT", 8, 0) == written
    finally:
        markers.close()


@pytest.mark.integration
def test_an_end_marker_writer_whose_producer_turned_unusable_gets_a_fresh_one(
    broker: Any,
) -> None:
    """A producer that failed for good (here: closed; in the field an idempotent producer's
    fatal state after a broker restart) makes the write StoreUnavailable, which the ASL
    retries: the retry must not meet the same dead producer again (before: it was kept, and
    every retry failed the same way until the Lambda container was recycled)."""
    from confluent_kafka import Producer  # noqa: PLC0415

    from hotshard.kafka import client_config  # noqa: PLC0415
    from hotshard.migration.errors import StoreUnavailable  # noqa: PLC0415
    from hotshard.migration.markers import Broker  # noqa: PLC0415

    markers = Broker(client_config(broker.bootstrap))
    dead = Producer(client_config(broker.bootstrap))
    dead.close()
    markers._producer = dead
    topic = names.TOPIC_PENDING_ORDERS
    try:
        with pytest.raises(StoreUnavailable):
            markers.write_end_marker(topic, 3, "HOT", 9)
        written = markers.write_end_marker(topic, 3, "HOT", 9)  # the retry
        assert markers.find_end_marker(topic, 3, "HOT", 9, 0) == written
    finally:
        markers.close()


@pytest.mark.integration
def test_an_end_marker_whose_producer_closed_in_flight_is_in_doubt_and_written_once(
    r: redis.Redis, broker: Any
) -> None:
    """The writer's producer was closed (as by another thread) after it took the marker and
    before its delivery report: the marker is in the log, the outcome in doubt. The write is
    StoreUnavailable with the dead producer dropped, and the ASL's retry records the marker
    that attempt wrote instead of writing a second one."""
    from hotshard.kafka import client_config  # noqa: PLC0415
    from hotshard.migration.errors import StoreUnavailable  # noqa: PLC0415
    from hotshard.migration.markers import Broker  # noqa: PLC0415
    from tests.hotshard.edge.kit import ClosedAfterTaking  # noqa: PLC0415

    markers = Broker(client_config(broker.bootstrap))
    ctx = replace(
        _context(r, Engine(control_pb2.UnfenceReply()), Engine(control_pb2.UnfenceReply())),
        broker=markers,
    )
    topic, key = names.TOPIC_PENDING_ORDERS, names.REDIS_PENDING_END.format("HOT", 11)
    markers._producer = closed = ClosedAfterTaking(broker.bootstrap)
    try:
        with pytest.raises(StoreUnavailable):
            steps.end_marker(ctx, topic, 1, "HOT", 11)
        assert markers._producer is None and len(closed.offsets) == 1
        steps.end_marker(ctx, topic, 1, "HOT", 11)  # the retry
        assert r.get(key) == f"{topic}/1/{closed.offsets[0]}".encode()
        assert markers.find_end_marker(topic, 1, "HOT", 11, closed.offsets[0] + 1) is None
    finally:
        markers.close()


@pytest.mark.integration
def test_closing_the_marker_broker_closes_its_producer(broker: Any) -> None:
    """Before, close() flushed the producer and dropped the reference: its threads and
    broker connections lived on until garbage collection ("Connection refused" lines
    once the broker stopped)."""
    from hotshard.kafka import client_config  # noqa: PLC0415
    from hotshard.migration.markers import Broker  # noqa: PLC0415

    markers = Broker(client_config(broker.bootstrap))
    markers.write_end_marker(names.TOPIC_PENDING_ORDERS, 2, "HOT", 12)
    producer = markers._producer
    markers.close()
    with pytest.raises(RuntimeError, match="closed"):
        producer.poll(0)
