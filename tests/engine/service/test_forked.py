"""Snapshots dumped by a forked child: the child's book is the book at the fork, whatever
the parent does to it meanwhile; a cancelled or failed child is reported, never taken for
a snapshot; nothing is left behind (no zombie, no open pipe)."""

import os
import time

import pytest

from engine.book import Book, add, cancel, snapshot
from engine.service.forked import DumpFailedError, DumpSpec, fork_dump
from hotshard.domain import Side, TimeInForce
from hotshard.reasons import Reason
from tests.builders import big_book


def churn(book: Book, rounds: int) -> None:
    """Trades, cancels and new orders: every kind of change a dump could tear."""
    for i in range(rounds):
        book.apply(add(f"t{i}", "taker", Side.BUY, 140, 7, tif=TimeInForce.IOC))
        book.apply(cancel(f"r{2 * i + 1}", f"u{(2 * i + 1) % 7}"))
        book.apply(add(f"n{i}", "maker", Side.SELL, 120, 3))


def no_child_left(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_the_child_dumps_the_book_as_it_was_at_the_fork_while_the_parent_changes_it():
    book = big_book("A", 40_000)
    expected = snapshot.dump(book, input_offset=41, partition=3, owner_epoch=2)
    child = fork_dump([DumpSpec(book, 41, 3, 2)])
    churn(book, 2_000)  # the parent's book moves on while the child dumps
    changed = snapshot.dump(book, input_offset=41, partition=3, owner_epoch=2)
    got = child.read_all()
    assert changed != expected  # the parent's book did change meanwhile
    assert got == {"A": expected}  # byte for byte the book at the fork
    restored, info = snapshot.load(got["A"])
    assert (info.input_offset, info.partition, info.owner_epoch, info.fenced) == (41, 3, 2, False)
    assert restored.seq < book.seq
    assert no_child_left(child.pid)


def test_one_child_dumps_several_books_in_order_with_their_own_offsets():
    books = [big_book(s, n) for s, n in (("A", 300), ("B", 0), ("C", 5_000))]
    specs = [DumpSpec(b, 10 * i, i, i + 1, fenced=i == 2) for i, b in enumerate(books)]
    child = fork_dump(specs)
    frames = list(child.frames())
    child.wait()
    assert [s for s, _ in frames] == ["A", "B", "C"]
    for (_, data), spec in zip(frames, specs, strict=True):
        assert data == snapshot.dump(
            spec.book,
            input_offset=spec.input_offset,
            partition=spec.partition,
            owner_epoch=spec.owner_epoch,
            fenced=spec.fenced,
        )


def test_a_cancelled_child_is_reported_and_what_it_did_not_write_is_not_taken():
    books = [big_book("A", 10), big_book("B", 100_000)]
    child = fork_dump([DumpSpec(b, 1, 0) for b in books])
    frames = child.frames()
    assert next(frames)[0] == "A"
    child.cancel()  # B's 100,000 orders (2.6 MB) cannot all be in the pipe yet
    assert [s for s, _ in frames] == []
    with pytest.raises(DumpFailedError) as failed:
        child.wait()
    assert failed.value.reason == Reason.NOT_DURABLE and "cancelled" in failed.value.detail
    assert child.received == {"A"}
    assert no_child_left(child.pid)


def test_a_child_that_fails_is_an_error_not_an_empty_snapshot():
    spec = DumpSpec(big_book("A", 10), "not an offset", 0)  # type: ignore[arg-type]
    began = time.monotonic()
    child = fork_dump([spec])  # the child's dump raises on it
    with pytest.raises(DumpFailedError) as failed:
        child.read_all()
    assert "wait status" in failed.value.detail and child.received == set()
    assert time.monotonic() - began < 10
    assert no_child_left(child.pid)
