"""The migration's pure decisions: what the input asks for, which symbol is hottest, which
engine takes it, whether a shadow has caught up, what a Rollback must undo, and the
summary of a finished move. No I/O: hotshard.migration.steps feeds them what it read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, replace
from typing import Any

from hotshard.migration.errors import BadInput, NoHotSymbol, NoTarget, RollbackImpossible
from hotshard.reasons import Reason
from hotshard.route import ACTIVE, MIGRATING, Route

PRE_COPY = "pre-copy"
STOP_AND_COPY = "stop-and-copy"
STRATEGIES = (PRE_COPY, STOP_AND_COPY)
DEFAULT_STRATEGY = PRE_COPY
CATCH_UP_LAG = 64  # records of the source partition a shadow may still have to read
ALARM_SOURCE = "aws.cloudwatch"


@dataclass(frozen=True)
class Request:
    """What an execution was started with: a symbol, or the hottest symbol of an engine
    (None: of the hottest engine, as after an alarm); a target engine or the warm pool."""

    strategy: str
    symbol: str | None = None
    engine: str | None = None
    target: str | None = None
    alarm: str = ""  # the alarm's name when CloudWatch (EventBridge) started it


def parse_request(event: Mapping[str, Any]) -> Request:
    """The execution input: `{"symbol": "AAPL", "strategy": "pre-copy", "target": "e-2"}`,
    `{"engine": "e-0"}` (its hottest symbol) or an EventBridge CloudWatch alarm event."""
    if event.get("source") == ALARM_SOURCE:
        detail = event.get("detail") or {}
        # An EventBridge target's input transformer may add the strategy to the event.
        chosen = str(event.get("strategy") or DEFAULT_STRATEGY)
        if chosen not in STRATEGIES:
            raise BadInput(f"strategy {chosen!r}: one of {', '.join(STRATEGIES)}")
        return Request(chosen, alarm=str(detail.get("alarmName", "alarm")))
    strategy = str(event.get("strategy") or DEFAULT_STRATEGY)
    if strategy not in STRATEGIES:
        raise BadInput(f"strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    symbol, engine, target = (event.get(k) or None for k in ("symbol", "engine", "target"))
    for key, value in (("symbol", symbol), ("engine", engine), ("target", target)):
        if value is not None and not isinstance(value, str):
            raise BadInput(f"{key} must be a string, not {value!r}")
    if symbol is None and engine is None:
        raise BadInput("the input names neither a symbol nor an engine")
    return Request(strategy, symbol, engine, target)


@dataclass(frozen=True)
class EngineLoad:
    """One live engine as its Stats show it."""

    instance: str
    address: str
    partitions: tuple[int, ...]
    cpu_percent: float
    symbols: Mapping[str, float]  # symbol -> orders/s (active books only)


RATE_ALARM = "SymbolRateHigh"  # infra/migration.py's per-symbol rate alarm


def engine_load(instance: str, address: str, partitions: Iterable[int], stats: Any) -> EngineLoad:
    """An engine's load from its StatsReply: the orders/s of the symbols it owns (not its
    shadows, on other partitions; not its fenced books, leaving)."""
    owned = set(partitions)
    fenced = {f.symbol for f in stats.fences}
    symbols = {
        s.symbol: s.orders_per_second
        for s in stats.symbols
        if (s.partition in owned or not s.partition) and s.symbol not in fenced
    }
    return EngineLoad(instance, address, tuple(sorted(owned)), stats.cpu_percent, symbols)


def hottest(
    engines: Iterable[EngineLoad],
    engine: str | None = None,
    *,
    by_rate: bool = False,
    cooling: Set[str] = frozenset(),
    threshold: float | None = None,
) -> tuple[EngineLoad, str]:
    """The engine to relieve and its busiest symbol: `engine`; else, `by_rate` (the rate
    alarm fired), the engine of the busiest symbol; else the highest CPU, then orders/s.
    Moving an engine's only symbol relieves nothing: NoHotSymbol.

    `cooling` (an alarm's execution): symbols whose last migration ended within the
    cooldown; none of them moves again yet (a moved symbol's meters restart on its new
    engine). When the hottest is one of them, the hottest other candidate still above the
    alarm's `threshold` moves instead: a symbol, by its orders/s (`by_rate`), or an engine,
    by its CPU, whose busiest symbol is not cooling down (the load of one that is, is the
    moved symbol's). None (or no threshold known): NoHotSymbol(MIGRATION_COOLDOWN)."""
    pool = list(engines)
    if engine is not None:
        pool = [e for e in pool if e.instance == engine]
        if not pool:
            raise BadInput(f"engine {engine!r} is not live")
    busy = [e for e in pool if e.symbols]
    if not busy:
        raise NoHotSymbol("no engine has an active symbol")
    if by_rate:
        shared = [e for e in busy if len(e.symbols) > 1] or busy
        source = max(shared, key=lambda e: (max(e.symbols.values()), e.instance))
    else:
        source = max(busy, key=lambda e: (e.cpu_percent, sum(e.symbols.values()), e.instance))
    if len(source.symbols) < 2:
        raise NoHotSymbol(f"{source.instance} trades one symbol only: moving it relieves nothing")
    symbol = _busiest(source)
    if symbol not in cooling:
        return source, symbol
    other = _not_cooling(busy, by_rate=by_rate, cooling=cooling, threshold=threshold)
    if other is None:
        raise NoHotSymbol(
            f"{symbol} is the hottest and its last migration ended within the cooldown; "
            "no other symbol is above the alarm's threshold",
            Reason.MIGRATION_COOLDOWN,
        )
    return other


def _busiest(load: EngineLoad, skip: Set[str] = frozenset()) -> str:
    return max((s for s in load.symbols if s not in skip), key=lambda s: (load.symbols[s], s))


def _not_cooling(
    busy: list[EngineLoad], *, by_rate: bool, cooling: Set[str], threshold: float | None
) -> tuple[EngineLoad, str] | None:
    """The hottest candidate above `threshold` that is not cooling down (hottest's)."""
    if threshold is None:
        return None
    shared = [e for e in busy if len(e.symbols) > 1]
    if by_rate:
        rates = [
            (rate, e.instance, s, e)
            for e in shared
            for s, rate in e.symbols.items()
            if s not in cooling and rate > threshold
        ]
        if not rates:
            return None
        _rate, _instance, symbol, source = max(rates, key=lambda r: (r[0], r[1], r[2]))
        return source, symbol
    hot = [e for e in shared if e.cpu_percent > threshold and _busiest(e) not in cooling]
    if not hot:
        return None
    source = max(hot, key=lambda e: (e.cpu_percent, sum(e.symbols.values()), e.instance))
    return source, _busiest(source)


def check_has_book(symbol: str, source: str, books: Iterable[str]) -> None:
    """A listed symbol no order was ever sent to has no book on its source: Snapshot and
    Fence would answer UNKNOWN_SYMBOL. It is refused before anything changes (NothingToMove,
    NO_BOOK), not moved by its route alone: a record already on its way to p would still
    create a book on the source after the route had left it."""
    if symbol not in set(books):
        raise NoHotSymbol(
            f"{symbol} has no book on {source} yet (no order was ever sent to it): nothing "
            f"to move, it stays routed to {source}",
            Reason.NO_BOOK,
        )


@dataclass(frozen=True)
class Candidate:
    instance: str
    address: str
    partitions: tuple[int, ...]


def choose_target(
    candidates: Iterable[Candidate],
    *,
    source: str,
    spare: Iterable[int],
    routed: Iterable[int],
    claimed: Iterable[str],
    requested: str | None,
) -> tuple[Candidate, int]:
    """The engine that takes the symbol and its partition q. `requested`: that engine, on
    its least-numbered partition; else an idle warm engine: it owns only spare partitions,
    none routed, and no other migration claimed it."""
    pool = [c for c in candidates if c.instance != source and c.partitions]
    if requested is not None:
        found = [c for c in pool if c.instance == requested]
        if not found:
            raise NoTarget(f"{requested!r} is not a live engine other than the source")
        return found[0], min(found[0].partitions)
    spare_set, routed_set, claimed_set = set(spare), set(routed), set(claimed)
    idle = [
        c
        for c in pool
        if set(c.partitions) <= spare_set
        and not set(c.partitions) & routed_set
        and c.instance not in claimed_set
    ]
    if not idle:
        raise NoTarget("no idle warm engine")
    chosen = min(idle, key=lambda c: c.instance)
    return chosen, min(chosen.partitions)


def cooling_down(now: float, ended: float | None, cooldown: float) -> bool:
    """Whether an alarm at `now` comes within `cooldown` of the end of a symbol's last
    migration (`ended`, None: none ended yet): it does not move that symbol again then."""
    return ended is not None and 0 <= now - ended < cooldown


def cooling(now: float, ended: Mapping[str, float], cooldown: float) -> frozenset[str]:
    """The symbols an alarm at `now` does not move (`ended`: when each symbol's last
    migration ended). The local monitor and DetectHotSymbol (an alarm's execution) both
    ask, with cdk.json's hotshard:migrationCooldownPeriods times the alarm period, and
    pass the answer to `hottest`: the cooldown is per symbol, another hot one may move."""
    return frozenset(s for s, at in ended.items() if cooling_down(now, at, cooldown))


def may_scale_in(
    engines: Iterable[Candidate], *, routed: Iterable[int], claimed: Iterable[str]
) -> bool:
    """Whether an instance may go back to the warm pool (terminated, desired capacity
    decremented): `engines` are its engine processes, `claimed` the engines another
    migration holds. Never while one of them carries a routed partition or is claimed:
    an instance runs several engines, and another move may have taken one of them."""
    routed_set, claimed_set = set(routed), set(claimed)
    return not any(set(e.partitions) & routed_set or e.instance in claimed_set for e in engines)


@dataclass(frozen=True)
class MarkerStep:
    """What an end_marker call does, from `pending-end:{S}:{E}` as it finds it."""

    done: bool  # the marker's offset is recorded: nothing to do
    search_from: int | None  # an earlier attempt may have written it at or after this


def marker_step(current: str | None) -> MarkerStep:
    """None: write the marker (after announcing it); `topic/partition/OFFSET`: done;
    `topic/partition/@START`: look for an earlier attempt's marker from START first;
    `topic/partition/` (the format before START was kept): look from 0."""
    if current is None:
        return MarkerStep(False, None)
    tail = current.rpartition("/")[2]
    if tail.isdigit():
        return MarkerStep(True, None)
    start = tail.removeprefix("@")
    return MarkerStep(False, int(start) if start.isdigit() else 0)


def caught_up(lag: int, threshold: int = CATCH_UP_LAG) -> bool:
    return 0 <= lag <= threshold


def ready_to_switch(
    lag: int,
    unindexed: int,
    *,
    checkpointing: bool = False,
    overdue: bool,
    threshold: int = CATCH_UP_LAG,
) -> bool:
    """Whether WaitForCatchUp ends: the shadow caught up (`caught_up`), its restored orders
    all indexed, and no periodic checkpoint under way on the source or the target.
    - The target's loop indexes a restored book a slice at a time (20,000 orders, 10-480 ms
      each holding the loop and the GIL: a million orders take ~50); a Promote that came
      while slices remained waited behind them (48-59 ms measured at 1M).
    - A periodic checkpoint of an engine holding million-order books runs for seconds (its
      child dumping a book takes a core, its stores the GIL's share); the move holds new
      ones from its Snapshot and Follow (Engine.hold_checkpoints), not one begun before,
      which a 1M pause met (Fence 82 ms on the engine, 156 ms pause).
    Once `overdue` (the step's wait is over) neither is waited for: the switch is as
    correct then, only slower."""
    return caught_up(lag, threshold) and (overdue or (unindexed <= 0 and not checkpointing))


# ---------------------------------------------------------------------- rollback


Replay = tuple[str, int, int, int, int | None]
"""(topic, partition, from_offset, epoch, through_offset): records of the symbol at that
route epoch from from_offset, through through_offset (None: up to its PENDING_END marker)."""


@dataclass(frozen=True)
class RollbackPlan:
    """What a Rollback does, in order (every part idempotent):
    1. `fence`: Fence(S, epoch, to_partition) on the source;
    2. `first_markers`: PENDING_END markers written before the route changes;
    3. `promote_target`: the switch's Promote on the target (done: answered as done);
    4. `fence_target`: Fence(S, epoch, to_partition) on the target; its fence offset g is
       kept (Redis) and bounds the replay of the target's partition (`through_target`);
    5. the route change (`route`, compared against `expected`);
    6. `end_markers`: PENDING_END markers written after it;
    7. Unfence(S, `unfence_epoch`) on the source with `replays`, in order;
    8. `remove_shadow`: Remove(S) on the target, which goes back to the pool."""

    route: str  # "none" | "switch-back" (MIGRATING -> source) | "move-back" (target -> source)
    expected: Route | None  # the route the route change compares against
    end_markers: tuple[tuple[str, int, int], ...]  # (topic, partition, epoch) PENDING_END
    unfence_epoch: int  # Unfence(S, this) on the source
    replays: tuple[Replay, ...]
    remove_shadow: bool
    fence: tuple[int, int] | None = None  # Fence(S, epoch, to_partition) on the source first
    first_markers: tuple[tuple[str, int, int], ...] = ()
    promote_target: bool = False
    fence_target: tuple[int, int] | None = None
    through_target: tuple[str, int] | None = None  # the replay (topic, partition) g bounds


def rollback_plan(
    *,
    strategy: str,
    current: Route | None,
    source_partition: int,
    source_instance: str,
    epoch: int,
    target_partition: int | None,
    target_instance: str | None,
    pending_from: int | None,
    target_from: int | None,
    pending_topic: str,
    orders_topic: str,
    target_fence: int | None = None,
) -> RollbackPlan:
    """Where the route is now decides it. `epoch` is the route's epoch before the move (e),
    the move's is e + 1, a move-back's e + 2. `pending_from`: pending-orders' start on p
    (stop-and-copy paused); `target_from`: `orders` q's end offset recorded before the route
    moved to q; `target_fence`: the target's fence offset on q a move-back recorded before
    it moved the route back (None: not fenced yet)."""
    remove = target_instance is not None
    if current is None:
        raise RollbackImpossible("the symbol has no route any more")
    on_source = current.partition == source_partition and current.instance == source_instance
    if current.status == MIGRATING:
        if current.epoch != epoch or not on_source:
            raise RollbackImpossible(f"route is {current}, not this migration's pause")
        # Back to the source at e + 1: the pending records (stamped e + 1) replay first,
        # then what the router sends to p from now on (held while the book is fenced). The
        # source is fenced first (the same Fence as WaitForDrain's, answered again if it
        # was done): an unfenced book would apply p's e + 1 records ahead of the pending
        # ones, and an Unfence finds no fence to lift, so nothing would replay them.
        return RollbackPlan(
            "switch-back",
            current,
            ((pending_topic, source_partition, epoch + 1),),
            epoch + 1,
            _pending_replay(pending_topic, source_partition, pending_from, epoch + 1),
            remove,
            None if target_partition is None else (epoch + 1, target_partition),
        )
    if current.status != ACTIVE:
        raise RollbackImpossible(f"route status {current.status!r}")
    if on_source:
        return _back_on_source(
            strategy,
            current,
            epoch=epoch,
            source_partition=source_partition,
            target_partition=target_partition,
            pending_from=pending_from,
            target_from=target_from,
            target_fence=target_fence,
            pending_topic=pending_topic,
            orders_topic=orders_topic,
            remove=remove,
        )
    if (
        current.partition == target_partition
        and current.instance == target_instance
        and current.epoch == epoch + 1
    ):
        if target_from is None:
            raise RollbackImpossible("the route moved but the target's start offset is unknown")
        if strategy == STOP_AND_COPY and pending_from is None:
            raise RollbackImpossible("the route switched but pending-orders' start is unknown")
        # The move-back. The target may have been promoted and applied q's e + 1 records
        # (some of them possibly after any marker a replay could stop at): the switch is
        # completed first (the source fenced, the pending buffer ended, the target
        # promoted: each answered as done if it was), then the target is fenced at e + 2
        # to p: it applied q's records through its fence offset g and refuses the later
        # ones (STALE_ROUTE, retried on the route as it is then). The source replays
        # exactly those - the pending buffer, then q through g - before p's e + 2 records.
        return RollbackPlan(
            "move-back",
            current,
            (),
            epoch + 2,
            _move_back_replays(
                strategy,
                source_partition,
                target_partition,
                epoch,
                pending_from,
                target_from,
                target_fence,
                pending_topic,
                orders_topic,
            ),
            remove,
            fence=(epoch + 1, target_partition),
            first_markers=(
                ((pending_topic, source_partition, epoch + 1),) if strategy == STOP_AND_COPY else ()
            ),
            promote_target=target_fence is None,
            fence_target=None if target_fence is not None else (epoch + 2, source_partition),
            through_target=(orders_topic, target_partition),
        )
    raise RollbackImpossible(f"route is {current}: neither this move's source nor its target")


def _move_back_replays(
    strategy: str,
    source_partition: int,
    target_partition: int,
    epoch: int,
    pending_from: int | None,
    target_from: int,
    target_fence: int | None,
    pending_topic: str,
    orders_topic: str,
) -> tuple[Replay, ...]:
    """What the source replays in a move-back: stop-and-copy's pending buffer (to its
    marker), then q's e + 1 records from where the move began through the target's fence
    offset (None until the target is fenced: `through`)."""
    first: tuple[Replay, ...] = ()
    if strategy == STOP_AND_COPY and pending_from is not None:
        first = ((pending_topic, source_partition, pending_from, epoch + 1, None),)
    return (*first, (orders_topic, target_partition, target_from, epoch + 1, target_fence))


def through(decided: RollbackPlan, target_fence: int) -> RollbackPlan:
    """The plan once the target is fenced at `target_fence`: the replay of its partition
    ends there, and the target is neither promoted nor fenced again."""
    if decided.through_target is None:
        return decided
    replays = tuple(
        (t, p, start, e, target_fence) if (t, p) == decided.through_target else (t, p, start, e, g)
        for t, p, start, e, g in decided.replays
    )
    return replace(decided, replays=replays, promote_target=False, fence_target=None)


def _pending_replay(
    topic: str, partition: int, start: int | None, epoch: int
) -> tuple[Replay, ...]:
    if start is None:
        return ()
    return ((topic, partition, start, epoch, None),)


def _back_on_source(
    strategy: str,
    current: Route,
    *,
    epoch: int,
    source_partition: int,
    target_partition: int | None,
    pending_from: int | None,
    target_from: int | None,
    target_fence: int | None,
    pending_topic: str,
    orders_topic: str,
    remove: bool,
) -> RollbackPlan:
    """The route is ACTIVE on the source: nothing moved (epoch e), or a Rollback run again
    after its route change (e + 1 a switch-back, e + 2 a move-back). Run again, it still
    owes the markers and the replay: the first run may have changed the route and then
    failed before the source's Unfence took them (a source killed meanwhile)."""
    if strategy == STOP_AND_COPY and current.epoch == epoch + 1 and pending_from is not None:
        return RollbackPlan(
            "none",
            None,
            ((pending_topic, source_partition, epoch + 1),),
            epoch + 1,
            _pending_replay(pending_topic, source_partition, pending_from, epoch + 1),
            remove,
        )
    if current.epoch == epoch + 2 and target_partition is not None and target_from is not None:
        replays = _move_back_replays(
            strategy,
            source_partition,
            target_partition,
            epoch,
            pending_from,
            target_from,
            target_fence,
            pending_topic,
            orders_topic,
        )
        # A move-back's route change comes after the target's fence offset is kept; none
        # kept: moved back by a Rollback that bounded q's replay with a marker instead.
        markers = () if target_fence is not None else ((orders_topic, target_partition, epoch + 1),)
        return RollbackPlan("none", None, markers, epoch + 2, replays, remove)
    return RollbackPlan("none", None, (), current.epoch, (), remove)


# ---------------------------------------------------------------------- the summary


def summary(state: Mapping[str, Any], status: str, now_ms: int) -> dict[str, Any]:
    """The line `hotshard migrate --json` prints (DESIGN section 8), from the execution's
    state: pause = first order delayed (pause or route switch) -> matching resumed."""
    migration = state.get("migration") or {}
    # $.target is the requested engine's id (the input's "target") until
    # ProvisionNewInstance replaces it with the engine it took
    target = state.get("target")
    if not isinstance(target, Mapping):
        target = {}
    switch = state.get("switch") or {}
    pause = state.get("pause") or {}
    replay = state.get("replay") or {}
    snapshot = state.get("snapshot") or {}
    delayed = pause.get("paused_ms") or switch.get("switched_ms")
    resumed = switch.get("resumed_ms")
    promoted = switch.get("promote") or {}
    buffered = max(
        int(replay.get("replayed", 0)) + int(replay.get("held", 0)),
        int(promoted.get("replayed", 0)) + int(promoted.get("held", 0)),
    )
    return {
        "status": status,
        "symbol": migration.get("symbol"),
        "from": (migration.get("source") or {}).get("instance"),
        "to": target.get("instance"),
        "strategy": migration.get("strategy"),
        "pause_ms": None if not (delayed and resumed) else max(0, int(resumed) - int(delayed)),
        "duration_ms": max(0, now_ms - int(migration.get("started_ms", now_ms))),
        "orders_buffered": buffered,
        "snapshot_bytes": int(snapshot.get("size_bytes", 0)),
    }
