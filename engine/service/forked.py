"""Book snapshots dumped by a forked child: copy-on-write, like Redis's BGSAVE.

`fork_dump` runs on the loop thread between two batches. os.fork() gives the child the
address space as it is at that instant (its pages shared copy-on-write), so the child's
books are exactly the books at the offsets captured with them, while the parent's go on
changing at once: the loop pays the fork (copying the page tables: it grows with the
process's resident memory, not with what the dump does) and no book is frozen, no record
held. The dump itself runs in another process, so it does not share the engine's GIL
either.

The parent has threads the child does not (librdkafka's, gRPC's, the heartbeat, the
offload workers), and a lock one of them held at the fork stays held in the child
forever. So the child touches nothing but the books it was given: it serialises them
(engine.book.snapshot: Python, protobuf, zlib), writes them to a pipe and leaves with
os._exit (no atexit handlers, no finalizers, no flush of buffers it inherited). The
parent reads the pipe on a worker thread (reading releases the GIL) and stores each
snapshot itself, with its own clients.

Pipe format, per book: `<HQ` (symbol length, snapshot length), the symbol (UTF-8), the
snapshot bytes. A child that fails or is killed leaves a short stream and a non-zero
status: `DumpChild.wait` raises DumpFailedError then.
"""

import contextlib
import faulthandler
import gc
import os
import signal
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from engine.book import Book
from engine.book.snapshot import dump
from hotshard.reasons import HotshardError, Reason

HEADER = struct.Struct("<HQ")
PIPE_BUFFER = 1 << 20


class DumpFailedError(HotshardError):
    """The forked child did not deliver every snapshot (it failed, or was cancelled)."""


@dataclass(frozen=True, slots=True)
class DumpSpec:
    """One book to dump, with what its snapshot says about it (captured on the loop)."""

    book: Book
    input_offset: int
    partition: int
    owner_epoch: int = 0
    fenced: bool = False


@dataclass(slots=True)
class DumpChild:
    """A running child: read its snapshots with `frames` (any thread), then `wait`."""

    pid: int
    symbols: tuple[str, ...]
    fork_s: float
    """How long the fork held the calling thread."""
    _pipe: BinaryIO
    received: set[str] = field(default_factory=set)
    cancelled: bool = False
    _reaped: bool = False

    def frames(self) -> Iterator[tuple[str, bytes]]:
        """(symbol, snapshot bytes) as the child writes them, in the order given."""
        while True:
            header = self._pipe.read(HEADER.size)
            if len(header) < HEADER.size:
                return  # end of the stream: `wait` tells a clean end from a failure
            name_len, size = HEADER.unpack(header)
            name = self._pipe.read(name_len)
            data = self._pipe.read(size)
            if len(name) < name_len or len(data) < size:
                return
            symbol = name.decode()
            self.received.add(symbol)
            yield symbol, data

    def read_all(self) -> dict[str, bytes]:
        """Every snapshot, once the child is done (raises DumpFailedError if it failed)."""
        try:
            out = dict(self.frames())
        finally:
            self.wait()
        return out

    def wait(self) -> None:
        """Reap the child; DumpFailedError unless it delivered every snapshot."""
        self._pipe.close()
        if self._reaped:
            return
        _, status = os.waitpid(self.pid, 0)
        self._reaped = True
        missing = [s for s in self.symbols if s not in self.received]
        if status != 0 or missing:
            why = "cancelled" if self.cancelled else f"wait status {status}"
            raise DumpFailedError(
                Reason.NOT_DURABLE, f"snapshot child {self.pid} {why}; not stored: {missing}"
            )

    def cancel(self) -> None:
        """Kill the child (what it already wrote can still be read)."""
        if self._reaped:
            return
        self.cancelled = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def fork_dump(specs: list[DumpSpec]) -> DumpChild:
    """Fork a child that dumps `specs`' books as they are now (call it where the books are
    consistent with their specs: on the loop thread, between batches)."""
    symbols = tuple(spec.book.symbol for spec in specs)
    read_fd, write_fd = os.pipe()
    began = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _child(write_fd, specs)
    fork_s = time.perf_counter() - began
    os.close(write_fd)
    return DumpChild(
        pid,
        symbols,
        fork_s,
        os.fdopen(read_fd, "rb", buffering=PIPE_BUFFER),
    )


def _child(write_fd: int, specs: list[DumpSpec]) -> None:
    status = 1
    try:
        # no collection: it would walk (and copy) every tracked page of the parent's heap
        gc.disable()
        faulthandler.enable(all_threads=False)  # a crash here says where on stderr
        with os.fdopen(write_fd, "wb", buffering=PIPE_BUFFER) as out:
            for spec in specs:
                data = dump(
                    spec.book,
                    input_offset=spec.input_offset,
                    partition=spec.partition,
                    owner_epoch=spec.owner_epoch,
                    fenced=spec.fenced,
                )
                name = spec.book.symbol.encode()
                out.write(HEADER.pack(len(name), len(data)))
                out.write(name)
                out.write(data)
                out.flush()  # each book as soon as it is dumped: the parent stores it
        status = 0
    except BaseException:
        pass
    finally:
        os._exit(status)
