"""Each migration task's work: `STEP(ctx, state) -> result`, `state` being the execution's
JSON state when the Task runs (statemachine/migration.asl.json: the input plus every earlier
step's result under its ResultPath) and the result what the ASL stores under the task's
own ResultPath. HANDOVER.md gives the sequences. Every step can run again after a failure
or a lost reply (Step Functions retries): the engine RPCs are idempotent, and what a step
must remember across a retry (an offset read before a route change) is kept in Redis."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from hotshard import names, registry, route
from hotshard.clients import text
from hotshard.migration import plan
from hotshard.migration.engines import EngineClient
from hotshard.migration.errors import (
    BadInput,
    EngineCallFailed,
    EngineUnavailable,
    NoHotSymbol,
    NotCaughtUp,
    RollbackImpossible,
    StoreUnavailable,
)
from hotshard.migration.fleet import Fleet, Target
from hotshard.migration.markers import Broker
from hotshard.migration.settings import MigrationSettings
from hotshard.reasons import Reason
from hotshard.route import ACTIVE, MIGRATING, Route
from hotshard.v1 import control_pb2

State = Mapping[str, Any]
Result = dict[str, Any]
KEY_TTL_S = 24 * 3600


def now_ms() -> int:
    return time.time_ns() // 1_000_000


FAULT_POINTS = ("SwitchRouting:moved", "SwitchRouting:promoted", "Rollback:routed")
"""Every Context.fault point of the steps (the local control plane reads which are armed
once per task, hotshard.local.control.point_faults)."""


def no_fault(_point: str) -> None:
    """Context.fault in AWS: no fault is ever injected."""


@dataclass
class Context:
    settings: MigrationSettings
    redis: redis.Redis
    fleet: Fleet
    broker: Broker
    execution: str = ""
    clock_ms: Callable[[], int] = now_ms
    engine: Callable[[str], EngineClient] = EngineClient
    sleep: Callable[[float], None] = time.sleep
    fault: Callable[[str], None] = no_fault
    """Called at a named point inside a step ("SwitchRouting:moved"): the local control
    plane raises there when a test asked it to (hotshard.local.control.point_faults)."""
    _clients: dict[str, EngineClient] = field(default_factory=dict)

    def client(self, address: str) -> EngineClient:
        if address not in self._clients:
            self._clients[address] = self.engine(address)
        return self._clients[address]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self.broker.close()


# ---------------------------------------------------------------------- the state


@dataclass(frozen=True)
class Move:
    """What every step after DetectHotSymbol knows: S moves from (A, p) at epoch e."""

    symbol: str
    strategy: str
    source: str
    source_address: str
    p: int
    epoch: int
    execution: str

    @classmethod
    def of(cls, state: State) -> Move:
        m = state.get("migration")
        if not isinstance(m, Mapping):
            raise BadInput("the state has no $.migration (DetectHotSymbol did not run)")
        src = m["source"]
        return cls(
            str(m["symbol"]),
            str(m["strategy"]),
            str(src["instance"]),
            str(src["address"]),
            int(src["partition"]),
            int(m["epoch"]),
            str(m.get("execution", "")),
        )

    @property
    def next_epoch(self) -> int:
        return self.epoch + 1


def target_of(state: State) -> Target:
    t = state.get("target")
    if not isinstance(t, Mapping):
        raise BadInput("the state has no $.target (ProvisionNewInstance did not run)")
    return Target(str(t["instance"]), str(t["address"]), int(t["partition"]), bool(t["scaled_out"]))


def _engine_address(r: redis.Redis, instance: str) -> str:
    record = registry.read_engine(r, instance)
    if record is None:
        raise EngineUnavailable(f"{instance} is not in the registry (restarting?)")
    return record.address


def _loads(ctx: Context) -> list[plan.EngineLoad]:
    out = []
    for engine in registry.live_engines(ctx.redis):
        try:
            stats = ctx.client(engine.address).stats()
        except (EngineUnavailable, EngineCallFailed):
            continue
        out.append(plan.engine_load(engine.instance, engine.address, engine.partitions, stats))
    return out


# ---------------------------------------------------------------------- the steps


def detect_hot_symbol(ctx: Context, state: State) -> Result:
    request = plan.parse_request(state)
    symbol = request.symbol
    if symbol is None:
        by_rate = request.alarm == plan.RATE_ALARM
        loads = _loads(ctx)
        _, symbol = plan.hottest(
            loads,
            request.engine,
            by_rate=by_rate,
            cooling=_cooling(ctx, loads) if request.alarm else frozenset(),
            threshold=ctx.settings.alarm_threshold(by_rate=by_rate),
        )
    found = route.lookup(ctx.redis, symbol)
    if found is None:
        raise BadInput(f"{symbol} is not listed")
    if found.status != ACTIVE:
        raise BadInput(f"{symbol} is {found.status} (another migration is moving it)")
    if request.target is not None and request.target == found.instance:
        raise NoHotSymbol(f"{symbol} is on {found.instance} already")
    address = _engine_address(ctx.redis, found.instance)
    health = ctx.client(address).health()
    if not health.serving:
        raise EngineUnavailable(f"{found.instance} is not serving yet (restarting?)")
    plan.check_has_book(symbol, found.instance, health.symbols)
    return {
        "symbol": symbol,
        "strategy": request.strategy,
        "source": {
            "instance": found.instance,
            "address": address,
            "partition": found.partition,
        },
        "epoch": found.epoch,
        "requested_target": request.target,
        "alarm": request.alarm,
        "execution": ctx.execution,
        "started_ms": ctx.clock_ms(),
    }


def ended_ms(r: redis.Redis, symbols: Iterable[str]) -> dict[str, int]:
    """When each symbol's last migration ended (ms; absent: none within KEY_TTL_S)."""
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    values = r.mget([names.REDIS_MIGRATION_ENDED.format(s) for s in wanted])
    return {s: int(text(v)) for s, v in zip(wanted, values, strict=True) if v is not None}


def _cooling(ctx: Context, loads: list[plan.EngineLoad]) -> frozenset[str]:
    """The symbols an alarm's execution does not move yet: their last migration (moved or
    rolled back) ended within the cooldown. The local monitor makes the same decision
    before it starts one."""
    ended = ended_ms(ctx.redis, (s for load in loads for s in load.symbols))
    return plan.cooling(ctx.clock_ms(), ended, ctx.settings.cooldown_s * 1000)


def _ended(ctx: Context, symbol: str) -> None:
    """Stamp the end of the symbol's migration (moved or rolled back): its cooldown starts."""
    ctx.redis.set(names.REDIS_MIGRATION_ENDED.format(symbol), str(ctx.clock_ms()), ex=KEY_TTL_S)


def provision_new_instance(ctx: Context, state: State) -> Result:
    move = Move.of(state)
    requested = (state.get("migration") or {}).get("requested_target")
    target = ctx.fleet.take(execution=move.execution, source=move.source, requested=requested)
    return target.as_dict()


def pause_routing(ctx: Context, state: State) -> Result:
    """stop-and-copy: MIGRATING. pending-orders' end offset on p is read before the pause
    and kept in Redis (a retry after the pause must not read a later one)."""
    move = Move.of(state)
    key = names.REDIS_PENDING_FROM.format(move.symbol, move.next_epoch)
    current = route.lookup(ctx.redis, move.symbol)
    paused = Route(move.symbol, move.p, move.source, MIGRATING, move.epoch)
    if current != paused:
        start = ctx.broker.end_offset(names.TOPIC_PENDING_ORDERS, move.p)
        record = json.dumps({"from_offset": start, "paused_ms": ctx.clock_ms()})
        ctx.redis.set(key, record, nx=True, ex=KEY_TTL_S)
        active = Route(move.symbol, move.p, move.source, ACTIVE, move.epoch)
        route.begin_migration(ctx.redis, active)
    raw = ctx.redis.get(key)
    if raw is None:
        raise StoreUnavailable(f"{key} is gone")
    kept = json.loads(text(raw))
    return {
        "from_offset": int(kept["from_offset"]),
        "paused_ms": int(kept["paused_ms"]),
        "epoch": move.next_epoch,
    }


def _fence_result(reply: control_pb2.FenceReply, at_ms: int) -> Result:
    return {
        "fence_offset": reply.fence_offset,
        "final_seq": reply.final_seq,
        "state_hash": reply.state_hash,
        "owner_epoch": reply.owner_epoch,
        "partition": reply.partition,
        "location": reply.location,
        "fenced_ms": at_ms,
    }


def wait_for_drain(ctx: Context, state: State) -> Result:
    """stop-and-copy: Fence(S, e+1, q) on the source."""
    move, target = Move.of(state), target_of(state)
    reply = ctx.client(move.source_address).fence(move.symbol, move.next_epoch, target.partition)
    return _fence_result(reply, ctx.clock_ms())


def transfer_snapshot(ctx: Context, state: State) -> Result:
    """The target follows p as a shadow from a snapshot of the source (by reference)."""
    move, target = Move.of(state), target_of(state)
    source = ctx.client(move.source_address)
    snap = source.snapshot(move.symbol)  # on a fenced book: the fence's snapshot, once stored
    if move.strategy == plan.STOP_AND_COPY:
        drain = state["drain"]
        location, offset = str(drain["location"] or snap.location), int(drain["fence_offset"])
    else:
        location, offset = snap.location, snap.input_offset
    follow = ctx.client(target.address).follow(move.symbol, location, move.p, offset + 1)
    return {
        "location": location,
        "input_offset": offset,
        "seq": follow.seq,
        "next_offset": follow.next_offset,
        "size_bytes": snap.size_bytes,
    }


def _checkpointing(ctx: Context, address: str) -> bool:
    """Whether the engine at `address` is in a periodic checkpoint; an engine that does not
    answer is not waited for here (the switch's Fence finds it, as it did before)."""
    try:
        return ctx.client(address).stats().checkpointing
    except (EngineUnavailable, EngineCallFailed):
        return False


def wait_for_catch_up(ctx: Context, state: State) -> Result:
    """pre-copy: the shadow's lag on p, polled until small (else NotCaughtUp, retried),
    its restored orders indexed on the target and no periodic checkpoint under way on the
    source or the target (plan.ready_to_switch: those two not waited for past the step's
    wait), so that the pause's Fence and Promote meet neither."""
    move, target = Move.of(state), target_of(state)
    deadline = time.monotonic() + ctx.settings.catch_up_wait_s
    lag = -1
    while True:
        stats = ctx.client(target.address).stats()
        shadows = [s for s in stats.shadows if s.symbol == move.symbol]
        if not shadows:
            raise EngineCallFailed("Stats", Reason.NONE, f"{target.instance}: no shadow of S")
        shadow = shadows[0]
        lag = shadow.lag
        overdue = time.monotonic() > deadline
        checkpointing = stats.checkpointing
        if plan.caught_up(lag, ctx.settings.catch_up_lag) and not checkpointing:
            checkpointing = _checkpointing(ctx, move.source_address)
        if plan.ready_to_switch(
            lag,
            shadow.unindexed,
            checkpointing=checkpointing,
            overdue=overdue,
            threshold=ctx.settings.catch_up_lag,
        ):
            return {
                "lag": lag,
                "next_offset": shadow.next_offset,
                "unindexed": shadow.unindexed,
                "checkpointing": checkpointing,
            }
        if overdue and not plan.caught_up(lag, ctx.settings.catch_up_lag):
            raise NotCaughtUp(f"{move.symbol} on {target.instance}: lag {lag}")
        ctx.sleep(0.05)


def _promote_request(
    move: Move,
    target: Target,
    fence: Mapping[str, Any],
    pending: Mapping[str, Any] | None,
    *,
    wait_durable: bool,
) -> control_pb2.PromoteRequest:
    request = control_pb2.PromoteRequest(
        symbol=move.symbol,
        through_offset=int(fence["fence_offset"]),
        expect_seq=int(fence["final_seq"]),
        expect_hash=str(fence["state_hash"]),
        owner_epoch=move.next_epoch,
        partition=target.partition,
        fallback_location=str(fence["location"]),
        wait_durable=wait_durable,
    )
    if pending is not None:
        request.pending.CopyFrom(
            control_pb2.PendingReplay(
                topic=names.TOPIC_PENDING_ORDERS,
                partition=move.p,
                from_offset=int(pending["from_offset"]),
                epoch=move.next_epoch,
            )
        )
    return request


def _promote_result(reply: control_pb2.PromoteReply) -> Result:
    return {
        "seq": reply.seq,
        "replayed": reply.replayed,
        "held": reply.held,
        "location": reply.location,
        "durable": reply.durable,
    }


def switch_routing(ctx: Context, state: State) -> Result:
    move, target = Move.of(state), target_of(state)
    switched = Route(move.symbol, target.partition, target.instance, ACTIVE, move.next_epoch)
    key = names.REDIS_MOVE.format(move.symbol, move.next_epoch)
    # Both channels open before the route changes: a channel's first call connects it,
    # which under load took ~50 ms per engine inside the pause (measured: Fence 8.6 ms on
    # the engine, 65 ms as the task saw it)
    if move.strategy != plan.STOP_AND_COPY:
        ctx.client(move.source_address).connect()
    ctx.client(target.address).connect()
    current = route.lookup(ctx.redis, move.symbol)
    moved_ms = None
    stored: bytes | str | None = None
    if current != switched:
        # Before the route changes: q's end offset (where a move-back replays from) and when,
        # set in the route change's own round trip (before it; an earlier attempt's stays)
        target_from = ctx.broker.end_offset(names.TOPIC_ORDERS, target.partition)
        record = {"target_from": target_from, "switched_ms": ctx.clock_ms()}
        status = MIGRATING if move.strategy == plan.STOP_AND_COPY else ACTIVE
        expected = Route(move.symbol, move.p, move.source, status, move.epoch)
        _, stored = route.noted_switch(
            ctx.redis,
            expected,
            target.partition,
            target.instance,
            (key, json.dumps(record), KEY_TTL_S),
        )
        moved_ms = ctx.clock_ms()
        ctx.fault("SwitchRouting:moved")
    else:  # an earlier attempt changed the route
        stored = ctx.redis.get(key)
    kept = json.loads(text(stored or b"{}"))
    pending = None
    if move.strategy == plan.STOP_AND_COPY:
        pending = state["pause"]
        fence = dict(state["drain"])
        end_marker(ctx, names.TOPIC_PENDING_ORDERS, move.p, move.symbol, move.next_epoch)
        fence["marked_ms"] = ctx.clock_ms()
    else:
        reply = ctx.client(move.source_address).fence(
            move.symbol, move.next_epoch, target.partition
        )
        fence = _fence_result(reply, ctx.clock_ms())
    promoted = ctx.client(target.address).promote(
        _promote_request(move, target, fence, pending, wait_durable=False)
    )
    resumed_ms = ctx.clock_ms()  # matching resumed: the fault point below is not the pause's
    ctx.fault("SwitchRouting:promoted")
    return {
        "epoch": move.next_epoch,
        "switched_ms": int(kept.get("switched_ms", ctx.clock_ms())),
        "moved_ms": moved_ms,  # the route changed (None: an earlier attempt changed it)
        "target_from": kept.get("target_from"),
        "resumed_ms": resumed_ms,
        "fence": fence,
        "promote": _promote_result(promoted),
    }


def end_marker(ctx: Context, topic: str, partition: int, symbol: str, epoch: int) -> None:
    """PENDING_END for (symbol, epoch) on topic/partition, once however often it is retried.
    `pending-end:{S}:{E}` is set BEFORE the marker is written (value
    `topic/partition/@start`, start being the partition's end offset then) and completed
    with the marker's offset after (a retry that finds `@start` looks for the marker an
    earlier attempt may have written from there before writing one): a router that
    produced a record and then finds no key knows its record is before the marker (it
    will be replayed); one that finds the offset compares; one that finds no offset yet
    waits for it (route.pending_ended)."""
    key = names.REDIS_PENDING_END.format(symbol, epoch)
    raw = ctx.redis.get(key)
    current = None if raw is None else text(raw)
    decided = plan.marker_step(current)
    if decided.done:
        return
    offset = None
    if decided.search_from is not None:
        # An earlier attempt died between the marker and its offset: a second marker
        # would make routers compare with it while the replay stops at the first.
        offset = ctx.broker.find_end_marker(topic, partition, symbol, epoch, decided.search_from)
    if offset is None:
        if decided.search_from is None:
            start = ctx.broker.end_offset(topic, partition)  # a lower bound on Tansu
            ctx.redis.set(key, f"{topic}/{partition}/@{start}", ex=KEY_TTL_S)
        offset = ctx.broker.write_end_marker(topic, partition, symbol, epoch)
    ctx.redis.set(key, f"{topic}/{partition}/{offset}", ex=KEY_TTL_S)


def replay_pending_orders(ctx: Context, state: State) -> Result:
    """The same Promote with wait_durable=true."""
    move, target = Move.of(state), target_of(state)
    switch = state["switch"]
    pending = state.get("pause") if move.strategy == plan.STOP_AND_COPY else None
    reply = ctx.client(target.address).promote(
        _promote_request(move, target, switch["fence"], pending, wait_durable=True)
    )
    if not reply.durable:
        raise StoreUnavailable(f"{move.symbol} on {target.instance} is not durable yet")
    return _promote_result(reply)


def _gone(exc: EngineCallFailed) -> bool:
    return exc.status == "NOT_FOUND"


def cleanup(ctx: Context, state: State) -> Result:
    """Remove(S) on the source; the target keeps the symbol (its claim is released)."""
    move, target = Move.of(state), target_of(state)
    try:
        address = _engine_address(ctx.redis, move.source)
        ctx.client(address).remove(move.symbol)
    except EngineCallFailed as exc:
        if not _gone(exc):
            raise
    ctx.fleet.release(target, execution=move.execution)
    _ended(ctx, move.symbol)
    return plan.summary(state, "SUCCEEDED", ctx.clock_ms())


def rollback(ctx: Context, state: State) -> Result:
    """Put the symbol back on its source as plan.rollback_plan decides from where the route
    is now: a switch-back (paused), a move-back (switched: the target is promoted, if it
    was not, and fenced first, and the source replays what it applied), or nothing to route;
    PENDING_END markers, Unfence on the source, drop the shadow, give the target back."""
    if not isinstance(state.get("migration"), Mapping):
        return {"route": "none", "detail": "nothing had started"}
    move = Move.of(state)
    target = target_of(state) if isinstance(state.get("target"), Mapping) else None
    current = route.lookup(ctx.redis, move.symbol)
    pending_raw = ctx.redis.get(names.REDIS_PENDING_FROM.format(move.symbol, move.next_epoch))
    move_raw = ctx.redis.get(names.REDIS_MOVE.format(move.symbol, move.next_epoch))
    back_key = names.REDIS_MOVE_BACK.format(move.symbol, move.next_epoch)
    back_raw = ctx.redis.get(back_key)
    decided = plan.rollback_plan(
        strategy=move.strategy,
        current=current,
        source_partition=move.p,
        source_instance=move.source,
        epoch=move.epoch,
        target_partition=None if target is None else target.partition,
        target_instance=None if target is None else target.instance,
        pending_from=None if pending_raw is None else json.loads(text(pending_raw))["from_offset"],
        target_from=None if move_raw is None else json.loads(text(move_raw)).get("target_from"),
        pending_topic=names.TOPIC_PENDING_ORDERS,
        orders_topic=names.TOPIC_ORDERS,
        target_fence=None if back_raw is None else int(text(back_raw)),
    )
    fenced = None
    if decided.fence is not None:
        fenced = _fence_for_rollback(ctx, move, *decided.fence)
    for topic, partition, epoch in decided.first_markers:
        end_marker(ctx, topic, partition, move.symbol, epoch)
    if decided.fence_target is not None and target is not None:
        decided = plan.through(
            decided, _fence_target(ctx, move, target, state, decided, fenced, back_key)
        )
    if decided.route == "switch-back" and decided.expected is not None:
        route.switch(ctx.redis, decided.expected, move.p, move.source)
    elif decided.route == "move-back" and decided.expected is not None:
        route.move(ctx.redis, decided.expected, move.p, move.source)
    for topic, partition, epoch in decided.end_markers:
        end_marker(ctx, topic, partition, move.symbol, epoch)
    ctx.fault("Rollback:routed")
    replays = [_replay_request(r) for r in decided.replays]
    try:
        unfenced = _unfence(ctx, move, decided.unfence_epoch, replays)
    except Exception:
        if target is not None and decided.route != "move-back":
            # The target holds at most a shadow (or a book fenced for the move-back, whose
            # fence offset is kept): back to the pool whatever the source answered (a retry
            # of the Rollback finds it given back already).
            with contextlib.suppress(Exception):
                _drop_target(ctx, move, target)
        raise
    if target is not None:
        _drop_target(ctx, move, target)
    _ended(ctx, move.symbol)
    return {
        "route": decided.route,
        "epoch": decided.unfence_epoch,
        "replayed": 0 if unfenced is None else unfenced.replayed,
        "held": 0 if unfenced is None else unfenced.held,
        "source_book": unfenced is not None,
        "target_fence": decided.replays[-1][4] if decided.through_target else None,
        "error": (state.get("error") or {}).get("Error"),
    }


def _replay_request(replay: plan.Replay) -> control_pb2.PendingReplay:
    topic, partition, start, epoch, through_offset = replay
    request = control_pb2.PendingReplay(
        topic=topic, partition=partition, from_offset=start, epoch=epoch
    )
    if through_offset is not None:
        request.through_offset = through_offset
    return request


def _fence_target(
    ctx: Context,
    move: Move,
    target: Target,
    state: State,
    decided: plan.RollbackPlan,
    fenced: control_pb2.FenceReply | None,
    key: str,
) -> int:
    """A move-back's hold on the target: the switch's Promote first (answered as done if it
    was: a shadow caught up through the source's fence becomes the book the source left,
    and applies what q holds of S), then Fence(S, e + 2, p): it stops at its fence offset g
    and refuses q's later records. g is kept before the route changes: a retry replays q
    through the same offset."""
    client = ctx.client(_engine_address(ctx.redis, target.instance))
    if decided.promote_target:
        if fenced is None:
            raise RollbackImpossible(f"{move.source} has no book of {move.symbol} to hand back to")
        pending = state.get("pause") if move.strategy == plan.STOP_AND_COPY else None
        client.promote(
            _promote_request(move, target, _fence_result(fenced, 0), pending, wait_durable=False)
        )
    assert decided.fence_target is not None
    epoch, to_partition = decided.fence_target
    offset = client.fence(move.symbol, epoch, to_partition).fence_offset
    ctx.redis.set(key, str(offset), nx=True, ex=KEY_TTL_S)
    return int(text(ctx.redis.get(key) or str(offset).encode()))


def _unfence(
    ctx: Context, move: Move, epoch: int, replays: list[control_pb2.PendingReplay]
) -> control_pb2.UnfenceReply | None:
    """Unfence(S) on the source, replaying `replays` in order first; None when it has no
    book of S (never had one, or lost it): nothing was fenced there, nothing to lift."""
    source = ctx.client(_engine_address(ctx.redis, move.source))
    try:
        return source.unfence(move.symbol, epoch, *replays)
    except EngineCallFailed as exc:
        if _gone(exc) or exc.engine_reason == Reason.UNKNOWN_SYMBOL:
            return None
        raise


def _drop_target(ctx: Context, move: Move, target: Target) -> None:
    """Remove S (a shadow, or a book promoted before a move-back) from the target and
    give the target back to the fleet."""
    try:
        ctx.client(_engine_address(ctx.redis, target.instance)).remove(move.symbol)
    except EngineCallFailed as exc:
        if not _gone(exc):
            raise
    ctx.fleet.give_back(target, execution=move.execution)


def _fence_for_rollback(
    ctx: Context, move: Move, epoch: int, to_partition: int
) -> control_pb2.FenceReply | None:
    """The move's Fence on the source before the route goes back (WaitForDrain's or
    SwitchRouting's, answered again if it was done); a source with no book of S has
    nothing to fence (None)."""
    try:
        return ctx.client(_engine_address(ctx.redis, move.source)).fence(
            move.symbol, epoch, to_partition
        )
    except EngineCallFailed as exc:
        if not _gone(exc):
            raise
    return None


STEPS: dict[str, Callable[[Context, State], Result]] = {
    "DetectHotSymbol": detect_hot_symbol,
    "ProvisionNewInstance": provision_new_instance,
    "PauseRouting": pause_routing,
    "WaitForDrain": wait_for_drain,
    "TransferSnapshot": transfer_snapshot,
    "WaitForCatchUp": wait_for_catch_up,
    "SwitchRouting": switch_routing,
    "ReplayPendingOrders": replay_pending_orders,
    "Cleanup": cleanup,
    "Rollback": rollback,
}
