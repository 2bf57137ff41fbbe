"""The WebSocket connection registry against a real Redis: a Redis that came back empty
(no AOF) forgets every connection; the process handling frames registers again those it
knows, so the stream handler finds them without the clients reconnecting."""

import pytest

from hotshard.edge.sessions import FORGOTTEN_CHECK_S, Sessions

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_connections_are_registered_again_after_redis_forgot_them(r):
    clock = Clock()
    router = Sessions(r, clock)  # the order router's: $connect, subscribe, every frame
    router.connect("c1", "ann", 1_000, pushes="batch")
    router.connect("c2", "ben", 2_000)
    router.subscribe("c2", ["AAPL", "MSFT"])
    router.set_cancel_on_disconnect("c2", True)
    router.connect("c3", "ann", 3_000)
    router.disconnect("c3")
    stream = Sessions(r)  # the stream handler's, another process
    assert stream.of_users(["ann"]) == {"ann": ["c1"]}
    assert router.register_again_if_forgotten() == 0  # nothing forgotten

    r.flushall()  # redis-server restarted without an AOF
    assert stream.of_users(["ann", "ben"]) == {"ann": [], "ben": []}
    assert router.register_again_if_forgotten() == 0  # checked a moment ago: not yet
    clock.now += FORGOTTEN_CHECK_S
    assert router.register_again_if_forgotten() == 2

    fresh = Sessions(r)
    assert fresh.of_users(["ann", "ben"]) == {"ann": ["c1"], "ben": ["c2"]}
    assert fresh.of_symbols(["AAPL", "MSFT"]) == {"AAPL": ["c2"], "MSFT": ["c2"]}
    assert fresh.batching(["c1", "c2"]) == {"c1"}
    assert fresh.cancels_on_disconnect("c2") and fresh.user_of("c2") == "ben"
    clock.now += FORGOTTEN_CHECK_S
    assert router.register_again_if_forgotten() == 0  # the marker is back


def test_a_connection_learned_from_redis_is_registered_again_too(r):
    Sessions(r).connect("c9", "cat", 9_000)  # $connect handled by another container
    clock = Clock()
    frames = Sessions(r, clock)
    assert frames.user_of("c9") == "cat"
    frames.subscribe("c9", ["HOT"])
    r.flushall()
    clock.now += FORGOTTEN_CHECK_S
    assert frames.register_again_if_forgotten() == 1
    assert Sessions(r).of_symbols(["HOT"]) == {"HOT": ["c9"]}
    assert Sessions(r).of_users(["cat"]) == {"cat": ["c9"]}


def test_every_router_process_registers_its_connections_again_even_after_a_new_connect(r):
    """Before, the marker was one SET NX: only the first process to check registered its
    connections again, and a $connect after the restart (it wrote the marker again) hid
    the loss from every process that had not checked yet."""
    clock = Clock()
    one, two = Sessions(r, clock), Sessions(r, clock)  # two containers of the router
    one.connect("c1", "ann", 1_000)
    two.connect("c2", "ben", 2_000)
    r.flushall()
    Sessions(r).connect("c3", "cat", 3_000)  # a client that reconnected at once
    clock.now += FORGOTTEN_CHECK_S
    assert (one.register_again_if_forgotten(), two.register_again_if_forgotten()) == (1, 1)
    assert Sessions(r).of_users(["ann", "ben", "cat"]) == {
        "ann": ["c1"],
        "ben": ["c2"],
        "cat": ["c3"],
    }
    clock.now += FORGOTTEN_CHECK_S
    assert (one.register_again_if_forgotten(), two.register_again_if_forgotten()) == (0, 0)
