"""The migration's pure decisions (hotshard.migration.plan)."""
# mypy: disable-error-code="arg-type"

import pytest

from hotshard.migration import plan
from hotshard.migration.errors import BadInput, NoHotSymbol, NoTarget, RollbackImpossible
from hotshard.migration.settings import MigrationSettings, parse_partitions
from hotshard.reasons import Reason
from hotshard.route import ACTIVE, MIGRATING, Route
from hotshard.v1 import control_pb2


def test_a_request_names_a_symbol_or_an_engine() -> None:
    assert plan.parse_request({"symbol": "HOT"}) == plan.Request("pre-copy", symbol="HOT")
    assert plan.parse_request(
        {"engine": "e-0", "strategy": "stop-and-copy", "target": "w-1"}
    ) == plan.Request("stop-and-copy", engine="e-0", target="w-1")
    with pytest.raises(BadInput):
        plan.parse_request({"strategy": "pre-copy"})
    with pytest.raises(BadInput, match="strategy"):
        plan.parse_request({"symbol": "HOT", "strategy": "teleport"})
    with pytest.raises(BadInput):
        plan.parse_request({"symbol": 7})


def test_an_alarm_event_asks_for_the_hottest_engine() -> None:
    event = {
        "source": "aws.cloudwatch",
        "detail-type": "CloudWatch Alarm State Change",
        "detail": {"alarmName": "EngineCpuHigh", "state": {"value": "ALARM"}},
    }
    assert plan.parse_request(event) == plan.Request("pre-copy", alarm="EngineCpuHigh")


def test_an_alarm_event_may_carry_the_strategy() -> None:
    """An EventBridge target's input transformer (the demo's monitor) may add it."""
    event = {"source": "aws.cloudwatch", "detail": {"alarmName": "SymbolRateHigh"}}
    assert plan.parse_request({**event, "strategy": "stop-and-copy"}) == plan.Request(
        "stop-and-copy", alarm="SymbolRateHigh"
    )
    with pytest.raises(BadInput, match="strategy"):
        plan.parse_request({**event, "strategy": "teleport"})


def _load(name: str, cpu: float, **symbols: float) -> plan.EngineLoad:
    return plan.EngineLoad(name, f"{name}:1", (0,), cpu, symbols)


def test_hottest_is_the_busiest_symbol_of_the_hottest_engine() -> None:
    engines = [_load("a", 40, X=10, Y=5), _load("b", 90, P=100, Q=300, R=1)]
    source, symbol = plan.hottest(engines)
    assert (source.instance, symbol) == ("b", "Q")
    assert plan.hottest(engines, "a")[1] == "X"
    with pytest.raises(BadInput):
        plan.hottest(engines, "zz")


def test_the_rate_alarm_moves_the_busiest_symbol_wherever_it_is() -> None:
    engines = [_load("a", 40, HOT=900, X=5), _load("b", 90, P=100, Q=300)]
    assert plan.hottest(engines)[1] == "Q"
    source, symbol = plan.hottest(engines, by_rate=True)
    assert (source.instance, symbol) == ("a", "HOT")
    # A busiest symbol alone on its engine is already isolated: the next busiest shared one.
    alone = [_load("a", 40, HOT=900), _load("b", 90, P=100, Q=300)]
    assert plan.hottest(alone, by_rate=True)[1] == "Q"


def test_a_lone_symbol_is_not_worth_moving() -> None:
    with pytest.raises(NoHotSymbol):
        plan.hottest([_load("a", 99, ONLY=1000)])
    with pytest.raises(NoHotSymbol):
        plan.hottest([_load("a", 0)])


COOLING = frozenset({"HOT"})  # HOT's last migration ended within the cooldown


def test_an_alarm_moves_a_second_hot_symbol_elsewhere_while_the_first_cools_down() -> None:
    # HOT moved to "b" and is still its busiest (its meters restarted there); "c" is hot too
    engines = [_load("a", 20, X=5, Y=1), _load("b", 95, HOT=900, Z=3), _load("c", 90, B=400, W=2)]
    assert plan.hottest(engines)[1] == "HOT"  # no cooldown: the hottest
    source, symbol = plan.hottest(engines, cooling=COOLING, threshold=85)
    assert (source.instance, symbol) == ("c", "B")
    source, symbol = plan.hottest(engines, by_rate=True, cooling=COOLING, threshold=100)
    assert (source.instance, symbol) == ("c", "B")


def test_the_cooling_symbol_itself_never_moves_nor_a_cold_one_in_its_place() -> None:
    engines = [_load("a", 20, X=5, Y=1), _load("b", 95, HOT=900, Z=3), _load("c", 30, B=40, W=2)]
    for by_rate, threshold in ((False, 85.0), (True, 100.0), (False, None), (True, None)):
        with pytest.raises(NoHotSymbol, match="HOT is the hottest") as refused:
            plan.hottest(engines, by_rate=by_rate, cooling=COOLING, threshold=threshold)
        assert refused.value.reason == Reason.MIGRATION_COOLDOWN
    # "b" is over the CPU threshold, but its load is HOT's: Z (3/s) would relieve nothing
    with pytest.raises(NoHotSymbol):
        plan.hottest([_load("b", 95, HOT=900, Z=3)], cooling=COOLING, threshold=1)
    # by rate, a second symbol above the threshold on HOT's own engine may move
    source, symbol = plan.hottest(
        [_load("b", 95, HOT=900, Z=300)], by_rate=True, cooling=COOLING, threshold=100
    )
    assert (source.instance, symbol) == ("b", "Z")


def test_the_cooldown_is_per_symbol() -> None:
    ended = {"HOT": 100.0, "B": 250.0, "OLD": -500.0}
    assert plan.cooling(279.9, ended, 180.0) == {"HOT", "B"}
    assert plan.cooling(280.0, ended, 180.0) == {"B"}
    assert plan.cooling(280.0, ended, 0.0) == frozenset()  # no cooldown configured
    assert plan.cooling(280.0, {}, 180.0) == frozenset()  # nothing moved yet


def test_an_engines_load_leaves_out_its_shadows_and_fenced_books() -> None:
    stats = control_pb2.StatsReply(
        cpu_percent=70,
        symbols=[
            control_pb2.SymbolStats(symbol="A", orders_per_second=5, partition=2),
            control_pb2.SymbolStats(symbol="SHADOW", orders_per_second=99, partition=7),
            control_pb2.SymbolStats(symbol="LEAVING", orders_per_second=50, partition=2),
            control_pb2.SymbolStats(symbol="P0", orders_per_second=1, partition=0),
        ],
        fences=[control_pb2.FenceStats(symbol="LEAVING")],
    )
    load = plan.engine_load("e", "e:1", [2, 3], stats)
    assert load == plan.EngineLoad("e", "e:1", (2, 3), 70, {"A": 5, "P0": 1})


C = plan.Candidate


def test_a_symbol_without_a_book_is_nothing_to_move() -> None:
    plan.check_has_book("HOT", "e-0", ["AAA", "HOT"])
    with pytest.raises(NoHotSymbol, match="HOT has no book on e-0") as refused:
        plan.check_has_book("HOT", "e-0", ["AAA", "HOTX"])
    assert refused.value.reason == Reason.NO_BOOK
    with pytest.raises(NoHotSymbol):
        plan.check_has_book("HOT", "e-0", [])


def test_an_alarm_within_the_cooldown_after_a_move_starts_nothing() -> None:
    assert not plan.cooling_down(100.0, None, 180.0)  # no migration ended yet
    assert plan.cooling_down(100.0, 100.0, 180.0)
    assert plan.cooling_down(279.9, 100.0, 180.0)
    assert not plan.cooling_down(280.0, 100.0, 180.0)
    assert not plan.cooling_down(100.0, 50.0, 0.0)  # no cooldown configured
    assert not plan.cooling_down(40.0, 50.0, 180.0)  # an end stamped ahead of this clock


def test_an_end_marker_is_written_once_even_after_a_retry() -> None:
    assert plan.marker_step(None) == plan.MarkerStep(False, None)  # announce, write
    assert plan.marker_step("pending-orders/3/120") == plan.MarkerStep(True, None)
    # an attempt died after announcing it: look for its marker from where it started
    assert plan.marker_step("pending-orders/3/@97") == plan.MarkerStep(False, 97)
    assert plan.marker_step("pending-orders/3/") == plan.MarkerStep(False, 0)


def test_target_is_an_idle_warm_engine_not_claimed() -> None:
    pool = [C("src", "s", (0, 1)), C("w-1", "w1", (4,)), C("w-0", "w0", (5,)), C("reg", "r", (2,))]
    kwargs = {"source": "src", "spare": [4, 5], "routed": [0, 1, 2], "requested": None}
    assert plan.choose_target(pool, claimed=[], **kwargs) == (pool[2], 5)
    assert plan.choose_target(pool, claimed=["w-0"], **kwargs) == (pool[1], 4)
    with pytest.raises(NoTarget):
        plan.choose_target(pool, claimed=["w-0", "w-1"], **kwargs)
    # A spare partition something is routed to is not idle.
    with pytest.raises(NoTarget):
        plan.choose_target(pool, claimed=[], **{**kwargs, "routed": [4, 5]})


def test_a_requested_target_is_used_if_live_and_not_the_source() -> None:
    pool = [C("src", "s", (0,)), C("reg", "r", (3, 2))]
    args = {"spare": [], "routed": [0, 2, 3], "claimed": []}
    assert plan.choose_target(pool, source="src", requested="reg", **args) == (pool[1], 2)
    with pytest.raises(NoTarget):
        plan.choose_target(pool, source="src", requested="src", **args)


def test_caught_up_below_the_threshold() -> None:
    assert plan.caught_up(0) and plan.caught_up(64)
    assert not plan.caught_up(65) and not plan.caught_up(-1)


def test_the_switch_waits_for_the_shadows_index_until_the_wait_is_over() -> None:
    # run 15: a 1M Promote queued 48-59 ms on the target's loop behind its index slices
    assert plan.ready_to_switch(0, 0, overdue=False)
    assert not plan.ready_to_switch(0, 20_000, overdue=False)
    assert plan.ready_to_switch(0, 20_000, overdue=True)  # correct as it is, only slower
    assert not plan.ready_to_switch(65, 0, overdue=False)
    assert not plan.ready_to_switch(65, 0, overdue=True)  # the lag decides: NotCaughtUp


def test_the_switch_waits_for_a_periodic_checkpoint_under_way_until_the_wait_is_over() -> None:
    # run 15: a 1M pause met the source's periodic checkpoint begun before the move's hold
    assert not plan.ready_to_switch(0, 0, checkpointing=True, overdue=False)
    assert plan.ready_to_switch(0, 0, checkpointing=True, overdue=True)
    assert not plan.ready_to_switch(65, 0, checkpointing=True, overdue=True)


def _plan(
    current: Route | None, strategy: str = "stop-and-copy", **kw: object
) -> plan.RollbackPlan:
    args: dict[str, object] = {
        "strategy": strategy,
        "current": current,
        "source_partition": 1,
        "source_instance": "A",
        "epoch": 5,
        "target_partition": 9,
        "target_instance": "B",
        "pending_from": 40,
        "target_from": 70,
        "pending_topic": "pending-orders",
        "orders_topic": "orders",
    }
    args.update(kw)
    return plan.rollback_plan(**args)


def test_rollback_of_a_pause_routes_back_at_the_new_epoch_and_replays_the_buffer() -> None:
    paused = Route("S", 1, "A", MIGRATING, 5)
    decided = _plan(paused)
    assert decided.route == "switch-back" and decided.expected == paused
    assert decided.end_markers == (("pending-orders", 1, 6),)
    assert decided.unfence_epoch == 6
    assert decided.replays == (("pending-orders", 1, 40, 6, None),)
    assert decided.remove_shadow
    # The source is fenced first (WaitForDrain may not have run): the pending records
    # must replay on it before p's new ones, and only a fenced book replays them.
    assert decided.fence == (6, 9)
    assert not decided.promote_target and decided.fence_target is None


def test_a_rollback_run_again_after_its_switch_back_still_replays_the_buffer() -> None:
    """The first run routed back and then failed before the source's Unfence (the source
    was killed): the second must still write the marker and replay pending-orders."""
    decided = _plan(Route("S", 1, "A", ACTIVE, 6))
    assert (decided.route, decided.expected, decided.fence) == ("none", None, None)
    assert decided.end_markers == (("pending-orders", 1, 6),)
    assert (decided.unfence_epoch, decided.replays) == (6, (("pending-orders", 1, 40, 6, None),))


@pytest.mark.parametrize("strategy", ["pre-copy", "stop-and-copy"])
def test_a_rollback_run_again_after_its_move_back_replays_through_the_kept_target_fence(
    strategy: str,
) -> None:
    """The first run fenced the target (q through 95 kept), moved the route back and died
    before the source's Unfence: the second replays the same records, nothing routed,
    nothing promoted or fenced on the target again, no marker on q (the fence bounds it)."""
    decided = _plan(Route("S", 1, "A", ACTIVE, 7), strategy, target_fence=95)
    assert (decided.route, decided.expected, decided.fence) == ("none", None, None)
    assert not decided.promote_target and decided.fence_target is None
    assert decided.end_markers == ()
    pending = (("pending-orders", 1, 40, 6, None),) if strategy == "stop-and-copy" else ()
    assert (decided.unfence_epoch, decided.replays) == (7, (*pending, ("orders", 9, 70, 6, 95)))


def test_a_move_back_of_an_older_rollback_still_replays_q_to_its_marker() -> None:
    """Routed back at e + 2 with no target fence kept (a Rollback from before the fence):
    q's replay stops at its PENDING_END marker, which is owed."""
    decided = _plan(Route("S", 1, "A", ACTIVE, 7), "pre-copy")
    assert decided.end_markers == (("orders", 9, 6),)
    assert (decided.unfence_epoch, decided.replays) == (7, (("orders", 9, 70, 6, None),))


def test_rollback_before_anything_moved_only_drops_the_shadow() -> None:
    decided = _plan(Route("S", 1, "A", ACTIVE, 5), "pre-copy")
    assert (decided.route, decided.end_markers, decided.replays) == ("none", (), ())
    assert decided.unfence_epoch == 5
    assert decided.fence is None
    # Run again after a switch-back: nothing more to route.
    assert _plan(Route("S", 1, "A", ACTIVE, 6)).route == "none"
    assert not _plan(Route("S", 1, "A", ACTIVE, 5), target_instance=None).remove_shadow


def test_a_pre_copy_move_back_fences_the_target_and_replays_q_through_its_fence() -> None:
    """The route is on the target at e + 1 (SwitchRouting failed after route.move, with or
    without its Fence and Promote): the source is fenced (the switch's Fence, answered again
    if done), the target promoted (the same) and fenced at e + 2 to p; only then does the
    route go back. The source replays q from where the move began through the target's
    fence offset: what the target applied, once, in order; no marker bounds it."""
    moved = Route("S", 9, "B", ACTIVE, 6)
    decided = _plan(moved, "pre-copy")
    assert decided.route == "move-back" and decided.expected == moved
    assert decided.fence == (6, 9) and decided.first_markers == ()
    assert decided.promote_target and decided.fence_target == (7, 1)
    assert decided.end_markers == ()
    assert decided.unfence_epoch == 7
    assert decided.replays == (("orders", 9, 70, 6, None),)  # through: the target's fence
    fenced = plan.through(decided, 88)
    assert fenced.replays == (("orders", 9, 70, 6, 88),)
    assert not fenced.promote_target and fenced.fence_target is None
    assert (fenced.route, fenced.expected, fenced.fence) == ("move-back", moved, (6, 9))
    # Run again after the target's fence was kept, before the route went back: the same.
    assert _plan(moved, "pre-copy", target_fence=88) == fenced


def test_a_stop_and_copy_move_back_ends_the_buffer_then_replays_it_and_q() -> None:
    """route.switch done: the pending buffer's marker comes first (the switch may have died
    before writing it; a promoted target's replay of it must end before its fence), then
    the source replays the buffer to that marker and q through the target's fence."""
    decided = _plan(Route("S", 9, "B", ACTIVE, 6), "stop-and-copy")
    assert decided.route == "move-back" and decided.fence == (6, 9)
    assert decided.first_markers == (("pending-orders", 1, 6),)
    assert decided.promote_target and decided.fence_target == (7, 1)
    assert plan.through(decided, 3).replays == (
        ("pending-orders", 1, 40, 6, None),
        ("orders", 9, 70, 6, 3),  # a target fence before q's start: nothing of q to replay
    )


@pytest.mark.parametrize(
    ("current", "strategy", "extra"),
    [
        (None, "pre-copy", {}),
        (Route("S", 9, "B", ACTIVE, 6), "stop-and-copy", {"pending_from": None}),
        (Route("S", 9, "B", ACTIVE, 6), "pre-copy", {"target_from": None}),
        (Route("S", 3, "C", ACTIVE, 6), "pre-copy", {}),
        (Route("S", 9, "B", ACTIVE, 7), "pre-copy", {}),
        (Route("S", 1, "A", MIGRATING, 8), "stop-and-copy", {}),
    ],
)
def test_rollback_refuses_what_it_cannot_put_back(
    current: Route | None, strategy: str, extra: dict[str, object]
) -> None:
    with pytest.raises(RollbackImpossible):
        _plan(current, strategy, **extra)


def test_summary_measures_the_pause_from_the_first_delayed_order() -> None:
    state = {
        "migration": {
            "symbol": "S",
            "strategy": "stop-and-copy",
            "source": {"instance": "A"},
            "started_ms": 1_000,
        },
        "target": {"instance": "B"},
        "pause": {"paused_ms": 2_000},
        "switch": {"switched_ms": 2_400, "resumed_ms": 2_450, "promote": {"replayed": 3}},
        "replay": {"replayed": 3, "held": 2},
        "snapshot": {"size_bytes": 1234},
    }
    assert plan.summary(state, "SUCCEEDED", 5_000) == {
        "status": "SUCCEEDED",
        "symbol": "S",
        "from": "A",
        "to": "B",
        "strategy": "stop-and-copy",
        "pause_ms": 450,
        "duration_ms": 4_000,
        "orders_buffered": 5,
        "snapshot_bytes": 1234,
    }
    del state["pause"]
    assert plan.summary(state, "SUCCEEDED", 5_000)["pause_ms"] == 50  # pre-copy: from the switch


def test_summary_of_an_execution_that_never_took_its_requested_target() -> None:
    """`hotshard migrate S --to E` with S on E already (NothingToMove), or a failure before
    ProvisionNewInstance: $.target is still the input's engine id, not the engine taken."""
    state: dict[str, object] = {"symbol": "S", "strategy": "pre-copy", "target": "engine-1"}
    assert plan.summary(state, "NOTHING_TO_MOVE", 5_000)["to"] is None
    state["migration"] = {"symbol": "S", "source": {"instance": "A"}, "started_ms": 1_000}
    assert plan.summary(state, "ROLLED_BACK", 5_000)["to"] is None


def test_settings_read_spare_partitions_and_the_fleet() -> None:
    assert parse_partitions("12-14, 20,13") == (12, 13, 14, 20)
    assert parse_partitions("") == ()
    with pytest.raises(ValueError):
        parse_partitions("5-3")
    s = MigrationSettings.from_env(
        {"SPARE_PARTITIONS": "4-5", "ENGINE_ASG": "g", "REDIS_PORT": "7"}
    )
    assert (s.spare_partitions, s.engine_asg, s.redis_port) == ((4, 5), "g", 7)
