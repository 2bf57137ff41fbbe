"""The latest depth kept in Redis: changes merge, snapshots replace, old updates are ignored."""

import pytest
import redis

from hotshard.edge.depth import DepthStore
from hotshard.events import DepthUpdate

pytestmark = pytest.mark.integration


def test_changes_merge_and_a_snapshot_replaces_stale_levels(r: redis.Redis) -> None:
    store = DepthStore(r, levels=5)
    assert store.apply("A", DepthUpdate(3, [(100, 5), (99, 2)], [(101, 4)]))
    assert store.apply("A", DepthUpdate(4, [(99, 0)], [(102, 1)]))
    assert store.read("A")["bids"] == [[100, 5]]
    assert store.read("A")["asks"] == [[101, 4], [102, 1]]
    # a level that vanished while this reader missed its update: the snapshot drops it
    assert store.apply("A", DepthUpdate(4, [(100, 5)], [(102, 1)], snapshot=True))
    shown = store.read("A")
    assert (shown["seq"], shown["bids"], shown["asks"]) == (4, [[100, 5]], [[102, 1]])


def test_updates_older_than_what_is_kept_are_ignored(r: redis.Redis) -> None:
    store = DepthStore(r)
    assert store.apply("B", DepthUpdate(7, [(10, 1)], []))
    assert not store.apply("B", DepthUpdate(7, [(10, 9)], []))
    assert not store.apply("B", DepthUpdate(6, [], [], snapshot=True))
    assert store.read("B")["bids"] == [[10, 1]]
