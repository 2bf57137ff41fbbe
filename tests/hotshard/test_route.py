"""hotshard.route against a real redis-server: listing by load, the migration moves and
their compare-and-set guards."""

import threading

import pytest
import redis

from hotshard import route
from hotshard.registry import EngineRecord, register_engine
from hotshard.route import ACTIVE, MIGRATING, Route

pytestmark = pytest.mark.integration


def engines(r: redis.Redis, layout: dict[str, tuple[int, ...]]) -> None:
    for instance, partitions in layout.items():
        record = EngineRecord(instance, f"127.0.0.1:{len(instance)}", partitions, 1)
        register_engine(r, record, 60_000)


def test_listing_spreads_symbols_over_the_least_loaded_partitions(r):
    engines(r, {"e1": (0, 1), "e2": (2, 3)})
    placed = [route.list_symbol(r, f"S{i}") for i in range(8)]
    assert sorted(p.partition for p in placed) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert all(p.status == ACTIVE and p.epoch == 1 for p in placed)
    assert {p.instance for p in placed if p.partition in (2, 3)} == {"e2"}
    assert route.partition_loads(r) == {0: 2, 1: 2, 2: 2, 3: 2}
    assert route.listed_symbols(r) == sorted(f"S{i}" for i in range(8))


def test_listing_follows_a_given_load_measure(r):
    engines(r, {"e1": (0, 1), "e2": (2,)})
    placed = route.list_symbol(r, "HOT", loads={0: 900.0, 1: 50.0, 2: 400.0})
    assert (placed.partition, placed.instance) == (1, "e1")


def test_listing_an_existing_symbol_returns_it_unchanged(r):
    engines(r, {"e1": (0,), "e2": (1,)})
    first = route.list_symbol(r, "AAPL")
    again = route.list_symbol(r, "AAPL")
    assert again == first
    assert sum(route.partition_loads(r).values()) == 1


def test_concurrent_listings_of_one_symbol_agree(r, redis_server):
    engines(r, {"e1": (0,), "e2": (1,), "e3": (2,)})
    results: list[Route] = []

    def list_it(loads: dict[int, float]) -> None:
        client = redis.Redis(host=redis_server.host, port=redis_server.port)
        results.append(route.list_symbol(client, "RACE", loads=loads))

    threads = [
        threading.Thread(target=list_it, args=({p: 0.0 if p == i else 1.0 for p in range(3)},))
        for i in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 3
    assert len(set(results)) == 1
    assert sum(route.partition_loads(r).values()) == 1


def test_listing_without_engines_names_unknown_symbol(r):
    with pytest.raises(route.NoEngineError) as info:
        route.list_symbol(r, "AAPL")
    assert info.value.reason.name == "UNKNOWN_SYMBOL"


def test_a_migration_pauses_then_switches_with_a_new_epoch(r):
    engines(r, {"e1": (0,), "e2": (1,)})
    listed = route.list_symbol_at(r, "AAPL", 0, "e1")
    paused = route.begin_migration(r, listed)
    assert (paused.status, paused.epoch, paused.partition) == (MIGRATING, 1, 0)
    moved = route.switch(r, paused, 1, "e2")
    assert moved == Route("AAPL", 1, "e2", ACTIVE, 2)
    assert route.lookup(r, "AAPL") == moved
    assert route.partition_loads(r) == {0: 0, 1: 1}


def test_a_noted_switch_sets_its_note_before_the_route_in_one_round_trip(r, monkeypatch):
    # SwitchRouting's record (where a move-back replays from) and the route change used to
    # be a SET, the route's EVAL and a GET: three round trips inside the pause
    engines(r, {"e1": (0,), "e2": (1,)})
    listed = route.list_symbol_at(r, "AAPL", 0, "e1")
    sent: list[int] = []
    execute = redis.client.Pipeline.execute

    def counted(self: redis.client.Pipeline, raise_on_error: bool = True) -> list[object]:
        sent.append(len(self.command_stack))
        return execute(self, raise_on_error)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counted)
    moved, stored = route.noted_switch(r, listed, 1, "e2", ("move:AAPL:2", "first", 60))
    assert moved == Route("AAPL", 1, "e2", ACTIVE, 2) and stored == b"first"
    assert sent == [3]  # SET NX, GET, the route's script: one pipeline
    with pytest.raises(route.RouteConflictError):  # a retry from the old view
        route.noted_switch(r, listed, 1, "e2", ("move:AAPL:2", "again", 60))
    assert r.get("move:AAPL:2") == b"first"  # an earlier attempt's note stays
    paused = route.begin_migration(r, moved)
    back, stored = route.noted_switch(r, paused, 0, "e1", ("move:AAPL:3", "s&c", 60))
    assert back == Route("AAPL", 0, "e1", ACTIVE, 3) and stored == b"s&c"


def test_an_aborted_migration_returns_the_symbol_where_it_was(r):
    listed = route.list_symbol_at(r, "AAPL", 3, "e1")
    paused = route.begin_migration(r, listed)
    back = route.abort_migration(r, paused)
    assert back == listed


def test_a_move_from_a_stale_view_is_refused_and_shows_the_current_route(r):
    listed = route.list_symbol_at(r, "AAPL", 0, "e1")
    paused = route.begin_migration(r, listed)
    moved = route.switch(r, paused, 1, "e2")
    with pytest.raises(route.RouteConflictError) as info:
        route.switch(r, paused, 2, "e3")
    assert info.value.current == moved
    with pytest.raises(route.RouteConflictError):
        route.begin_migration(r, listed)  # epoch 1 is gone
    assert route.lookup(r, "AAPL") == moved


def test_two_migrations_of_one_symbol_cannot_both_begin(r):
    listed = route.list_symbol_at(r, "AAPL", 0, "e1")
    route.begin_migration(r, listed)
    with pytest.raises(route.RouteConflictError):
        route.begin_migration(r, listed)


def test_delisting_removes_the_route_and_its_load(r):
    route.list_symbol_at(r, "AAPL", 2, "e1")
    assert route.delist(r, "AAPL")
    assert not route.delist(r, "AAPL")
    assert route.lookup(r, "AAPL") is None
    assert route.partition_loads(r) == {2: 0}
    assert route.listed_symbols(r) == []


def test_a_symbol_listed_again_starts_above_every_epoch_it_had(r):
    """Before, a listing again restarted at epoch 1: below the fence (or gone entry) its
    old owner keeps, which refused every order of the symbol listed again there for good."""
    listed = route.list_symbol_at(r, "AAPL", 0, "e1")
    moved = route.move(r, listed, 3, "e2")
    assert moved.epoch == 2
    assert route.delist(r, "AAPL")
    assert route.last_epoch(r, "AAPL") == 2
    again = route.list_symbol_at(r, "AAPL", 0, "e1")
    assert again.epoch == 4  # above 3, the epoch a Remove after the delisting fences at
    assert route.list_symbol_at(r, "AAPL", 5, "e3") == again  # listing stays idempotent
    assert route.delist(r, "AAPL")
    assert route.list_symbol_at(r, "AAPL", 0, "e1").epoch == 6
    assert route.last_epoch(r, "NEVER") is None
    assert route.partition_loads(r) == {0: 1, 3: 0}


def test_a_record_is_after_the_pending_end_marker_only_past_its_offset():
    assert route.pending_verdict(None, 5) is False  # the marker is written later
    assert route.pending_verdict(b"pending-orders/0/", 5) is None  # being written
    assert route.pending_verdict(b"pending-orders/0/10", 9) is False
    assert route.pending_verdict(b"pending-orders/0/10", 11) is True


def test_the_router_waits_for_the_marker_offset_instead_of_refusing(r):
    """The race closure's window: the key is set, the marker not yet acknowledged. A record
    before the marker is replayed by the move, so it must not be told it was refused."""
    key = "pending-end:HOT:2"
    r.set(key, "pending-orders/0/")
    writer = threading.Timer(0.05, lambda: r.set(key, "pending-orders/0/40"))
    writer.start()
    try:
        assert route.pending_ended(r, "HOT", 2, 39) is False
    finally:
        writer.join()
    assert route.pending_ended(r, "HOT", 2, 41) is True
    r.set(key, "pending-orders/0/")
    with pytest.raises(route.PendingEndUnknownError):
        route.pending_ended(r, "HOT", 2, 39, wait_s=0.05)
