"""The ended orders a book still remembers (its dedup window), apart from the live ones.

Most of a window is cold: a million ended orders across the books of a process. Kept as
`Order` objects in the live index (as before), forgetting the oldest cost ~4 cache misses
(its `Order`, its id strings, two lines of the dict), the largest single cost of a book on
short levels; holding only their id strings still cost one or two (releasing them). So
nothing here is a Python object per order: a ring of the last `window` ended orders in
fixed-width columns (filled, id hash, where the ids' characters are) and the ids' code
points in one arena, written and forgotten in ring order (sequential memory), plus an
open-addressing table (linear probing) from the order id's hash to a ring slot: the one
random access of an ADD's duplicate check, in a table of 8 bytes per slot. The ids are
compared only when an entry's 32-bit hash agrees.
"""

from typing import Final, final

from librt.strings import StringWriter
from librt.vecs import append, vec
from mypy_extensions import i32, i64

LOW: Final[i64] = 0xFFFFFFFF
"""A table entry is (ring slot + 1) << 32 | hash (32 bits); 0 is an empty table slot."""
MIN_TABLE: Final[i64] = 16
MIN_ARENA: Final[i64] = 256


def id_hash(order_id: str) -> i64:
    """The low 32 bits of the id's str hash (cached in the str: the live index's probe of
    the same id computed it already). Seeded per process (PYTHONHASHSEED): it decides
    where an entry sits in the table, never whether it is found."""
    return hash(order_id) & LOW


@final
class EndedOrders:
    __slots__ = (
        "arena",
        "filled",
        "hashes",
        "head",
        "lengths",
        "mask",
        "oldest",
        "starts",
        "table",
        "used",
        "window",
    )

    def __init__(self, window: i64) -> None:
        self.window = window
        # Per ring slot: the order's filled quantity, its order id's hash, where its ids'
        # code points start in `arena`, and their lengths (order id << 32 | user id).
        self.filled: vec[i64] = vec[i64]()
        self.hashes: vec[i64] = vec[i64]()
        self.starts: vec[i64] = vec[i64]()
        self.lengths: vec[i64] = vec[i64]()
        # Once the ring is full, `oldest` is the slot to forget (and reuse) next.
        self.oldest: i64 = 0
        self.mask: i64 = MIN_TABLE - 1
        self.table: vec[i64] = vec[i64](capacity=MIN_TABLE)
        for _ in range(MIN_TABLE):
            self.table = append(self.table, 0)
        # The ids' code points, a circular buffer in ring order: a slot's order id then
        # user id, contiguous; `head` is where the next ones go.
        self.arena: vec[i32] = vec[i32]()
        self.head: i64 = 0
        self.used: i64 = 0
        """Code points the held slots' ids have in all."""

    def count(self) -> i64:
        return len(self.filled)

    def find(self, order_id: str, user_id: str) -> i64:
        """The ring slot of the ended order (user_id, order_id), or -1."""
        if not len(self.filled):
            return -1
        h = id_hash(order_id)
        table = self.table
        mask = self.mask
        at = h & mask
        while True:
            entry = table[at]
            if not entry:
                return -1
            if entry & LOW == h:
                slot = (entry >> 32) - 1
                if self._holds(slot, order_id, user_id):
                    return slot
            at = (at + 1) & mask

    def add(self, order_id: str, user_id: str, filled: i64) -> None:
        """Remember an ended order (not remembered already), forgetting the oldest beyond
        the window. A window of 0 remembers nothing."""
        window = self.window
        if not window:
            return
        count: i64 = len(self.filled)
        if count < window:
            if (count + 1) * 8 > (self.mask + 1) * 5:  # keep the table at most 5/8 full
                self._grow_table()
            slot = count
            self.filled = append(self.filled, filled)
            self.hashes = append(self.hashes, 0)
            self.starts = append(self.starts, 0)
            self.lengths = append(self.lengths, 0)
            tail_slot: i64 = 0
        else:
            slot = self.oldest
            self._drop(self.hashes[slot], slot)
            lengths = self.lengths[slot]
            self.used -= (lengths >> 32) + (lengths & LOW)
            self.lengths[slot] = 0
            self.filled[slot] = filled
            tail_slot = slot + 1 if slot + 1 < window else 0
            self.oldest = tail_slot
        id_length: i64 = len(order_id)
        user_length: i64 = len(user_id)
        start = self._space(id_length + user_length, tail_slot)
        arena = self.arena
        for i in range(id_length):
            arena[start + i] = ord(order_id[i])
        at = start + id_length
        for i in range(user_length):
            arena[at + i] = ord(user_id[i])
        self.head = at + user_length
        self.used += id_length + user_length
        self.starts[slot] = start
        self.lengths[slot] = (id_length << 32) | user_length
        h = id_hash(order_id)
        self.hashes[slot] = h
        self._put(h, slot)

    def columns(self) -> tuple[list[str], list[str], list[int]]:
        """(order ids, user ids, filled), oldest first."""
        order_ids: list[str] = []
        user_ids: list[str] = []
        filled: list[int] = []
        count = len(self.filled)
        for n in range(count):
            slot = self.oldest + n
            if slot >= count:
                slot -= count
            order_ids.append(self._text(self.starts[slot], self.lengths[slot] >> 32))
            user_ids.append(
                self._text(self.starts[slot] + (self.lengths[slot] >> 32), self.lengths[slot] & LOW)
            )
            filled.append(self.filled[slot])
        return order_ids, user_ids, filled

    def _holds(self, slot: i64, order_id: str, user_id: str) -> bool:
        lengths = self.lengths[slot]
        id_length: i64 = len(order_id)
        user_length: i64 = len(user_id)
        if lengths != (id_length << 32) | user_length:
            return False
        arena = self.arena
        start = self.starts[slot]
        for i in range(id_length):
            if arena[start + i] != ord(order_id[i]):
                return False
        start += id_length
        for i in range(user_length):  # noqa: SIM110 - all() of a generator is slower compiled
            if arena[start + i] != ord(user_id[i]):
                return False
        return True

    def _text(self, start: i64, length: i64) -> str:
        out = StringWriter()
        arena = self.arena
        for i in range(length):
            out.append(arena[start + i])
        return out.getvalue()

    def _space(self, need: i64, tail_slot: i64) -> i64:
        """Where the `need` code points of the slot being written go: at `head`, or at 0
        if they do not fit before the end, without reaching the oldest held slot's
        (`tail_slot`: the held slots' code points run from its start to `head`, wrapping
        at most once); else the arena grows (held slots packed from 0, in ring order)."""
        head = self.head
        if not need:
            return head
        size: i64 = len(self.arena)
        if not self.used:
            if need <= size:
                return 0
        else:
            tail = self.starts[tail_slot]
            if head > tail:
                if size - head >= need:
                    return head
                if tail >= need:
                    return 0
            elif head < tail and tail - head >= need:
                return head
        self._grow_arena(need)
        return self.head

    def _grow_arena(self, need: i64) -> None:
        """A new arena, at least twice the held code points and `need`, with the held
        slots' code points packed from 0 in ring order; `head` just past them."""
        size: i64 = MIN_ARENA
        while size < 2 * (self.used + need):
            size *= 2
        old = self.arena
        arena = vec[i32](capacity=size)
        count: i64 = len(self.filled)
        for n in range(count):
            slot = self.oldest + n
            if slot >= count:
                slot -= count
            lengths = self.lengths[slot]
            start = self.starts[slot]
            self.starts[slot] = len(arena)
            for i in range((lengths >> 32) + (lengths & LOW)):
                arena = append(arena, old[start + i])
        self.head = len(arena)
        while len(arena) < size:
            arena = append(arena, 0)
        self.arena = arena

    def _put(self, h: i64, slot: i64) -> None:
        table = self.table
        mask = self.mask
        at = h & mask
        while table[at]:
            at = (at + 1) & mask
        table[at] = ((slot + 1) << 32) | h

    def _drop(self, h: i64, slot: i64) -> None:
        """Take ring slot `slot` (its id's hash `h`) out of the table, shifting back the
        entries after it that would otherwise no longer be found (linear probing needs no
        tombstones that way)."""
        table = self.table
        mask = self.mask
        mine = ((slot + 1) << 32) | h
        hole = h & mask
        while table[hole] != mine:
            hole = (hole + 1) & mask
        at = hole
        while True:
            at = (at + 1) & mask
            entry = table[at]
            if not entry:
                table[hole] = 0
                return
            home = entry & mask
            # the entry stays if its home lies cyclically in (hole, at]
            if (hole < home <= at) if hole <= at else (home > hole or home <= at):
                continue
            table[hole] = entry
            hole = at

    def _grow_table(self) -> None:
        size = (self.mask + 1) * 2
        table = vec[i64](capacity=size)
        for _ in range(size):
            table = append(table, 0)
        self.table = table
        self.mask = size - 1
        for slot in range(len(self.hashes)):
            self._put(self.hashes[slot], slot)
