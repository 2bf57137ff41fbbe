"""The engine's per-record and per-(symbol, batch) loops: consumed records grouped by book,
then each book's commands applied and its events written as records.

`EngineState.apply_batch` (engine/service/core.py) is the caller and owns every decision
about a record that is not plain (`place`: admission, holding, new books, refusals); this
module only does what every plain record needs, in order, with no state of its own.
Compiled with the book (engine.native, `make native`; the same source runs as plain Python
with `HOTSHARD_BOOK=python`): interpreted, these loops were ~30% of an engine's CPU per
order (cProfile of apply_batch alone, docs/BENCHMARKS.md), and compiled they call the
compiled book and the record writer (engine.fastwire) directly.
"""

from collections.abc import Callable

from engine.book.book import Book
from hotshard.commands import Command
from hotshard.events import Event
from hotshard.names import TOPIC_DEPTH, TOPIC_FILLS, TOPIC_ORDER_STATUS, TOPIC_TRADES
from hotshard.reasons import Reason
from hotshard.wire import DecodedOrder, SymbolRecords

Record = tuple[int, int, bytes | None, bytes | None]
"""A consumed `orders` record: (partition, offset, key, value)."""
Output = tuple[str, int, bytes, bytes]
"""A record to publish: (topic, partition, key, value)."""
Plain = tuple[str, Command, int, int, int]
"""A well-formed order read straight from its bytes (engine.fastwire.decode_plain):
(symbol, command, route_epoch, client_ts_ns, received_ts_ns)."""

Decode = Callable[[bytes | None, bytes | None], DecodedOrder]
DecodePlain = Callable[[bytes], Plain | None]
Place = Callable[[Record, DecodedOrder], Book | None]
Encode = Callable[..., SymbolRecords]


class Touched:
    """One symbol's share of a batch: commands wait here and go to the book in one
    Book.apply_all call (in order; an in-sequence rejection applies what waits first).
    `offsets` has each command's and rejection's input offset in order, `ends` the position
    just past each one's events once applied. A paced stream touches most symbols with a
    few records each turn, so what one costs is paid every few orders: no list here is
    made only to be copied into another."""

    def __init__(self, book: Book, after_seq: int) -> None:
        self.book = book
        self.after_seq = after_seq
        self.commands: list[Command] = []
        self.events: list[Event] = []
        self.ends: list[int] = []
        self.offsets: list[int] = []
        self.client_ts: list[int] = []
        self.stamps: dict[int, int] = {}
        """Input offset -> the order's received_ts_ns (only orders that carry one)."""
        self.last_offset = -1

    def add(self, offset: int, command: Command) -> None:
        self.commands.append(command)
        self.offsets.append(offset)

    def apply_pending(self) -> None:
        commands = self.commands
        if not commands:
            return
        if self.ends:  # applied before (a rejection came between): the ends count on
            base = len(self.events)
            ends: list[int] = []
            self.events.extend(self.book.apply_all(commands, ends))
            self.ends.extend([base + e for e in ends])
        else:
            self.events = self.book.apply_all(commands, self.ends)
        commands.clear()

    def reject(self, offset: int, order_id: str, user_id: str, reason: Reason) -> None:
        self.apply_pending()
        self.book.reject(order_id, user_id, reason, self.events)
        self.ends.append(len(self.events))
        self.offsets.append(offset)


def gather(
    records: list[Record],
    decode: Decode,
    decode_plain: DecodePlain | None,
    books: dict[str, Book],
    home: dict[str, int],
    epochs: dict[str, int],
    skip: dict[str, int],
    plain: bool,
    place: Place,
    touched: dict[tuple[int, str], Touched],
    last_offsets: dict[int, int],
) -> None:
    """Group `records` (of owned partitions, in order) by (partition, symbol) into `touched`.

    `decode_plain` (None: every record through `decode`) reads a well-formed order without
    building its DecodedOrder; `decode` reads anything, as hotshard.wire.decode_order does.
    With `plain` (no move under way) a record of its book's home partition at or above the
    book's epoch is applied without asking `place`, which decides every other record (the
    book to apply it to, or None: held, ignored or refused by `place` itself). Records at
    or below the symbol's `skip` offset are already in its book."""
    for record in records:
        partition, offset, key, value = record
        last_offsets[partition] = offset
        read = decode_plain(value) if decode_plain is not None and value else None
        decoded: DecodedOrder | None = None
        command: Command | None
        if read is None:
            decoded = decode(value, key)
            symbol = decoded.symbol
            command = decoded.command
            epoch = decoded.route_epoch
            client_ts = decoded.client_ts_ns
            received = decoded.received_ts_ns
        else:
            symbol, command, epoch, client_ts, received = read
        if skip and offset <= skip.get(symbol, -1):
            continue
        book = books.get(symbol) if plain else None
        if book is None or home.get(symbol) != partition or epoch < epochs.get(symbol, 0):
            if decoded is None:
                assert command is not None
                decoded = DecodedOrder(
                    symbol,
                    command,
                    epoch,
                    client_ts,
                    Reason.NONE,
                    command[1],
                    command[2],
                    received,
                )
            book = place(record, decoded)
            if book is None:
                continue
        entry = touched.get((partition, symbol))
        if entry is None:
            entry = Touched(book, book.seq)
            touched[(partition, symbol)] = entry
        if command is None:
            assert decoded is not None
            entry.reject(offset, decoded.order_id, decoded.user_id, decoded.reason)
        else:
            entry.add(offset, command)
        entry.last_offset = offset
        if received:
            entry.stamps[offset] = received
        if client_ts:
            entry.client_ts.append(client_ts)


def emit(
    touched: dict[tuple[int, str], Touched],
    encode: Encode,
    keys: dict[str, bytes],
    dirty: set[str],
    limit: int,
) -> tuple[list[Output], dict[str, int], dict[str, list[int]]]:
    """Apply each touched book's waiting commands and write its events (and its depth, if
    levels changed) as records, in pieces of at most `limit` events (split_events); returns
    the records, the commands applied per symbol and the client timestamps per symbol.
    `keys` caches each symbol's record key; `dirty` gets every symbol that changed."""
    outputs: list[Output] = []
    orders: dict[str, int] = {}
    client_ts: dict[str, list[int]] = {}
    for where, entry in touched.items():
        partition, symbol = where
        entry.apply_pending()
        if not entry.offsets:
            continue
        book = entry.book
        key_bytes = keys.get(symbol)
        if key_bytes is None:
            key_bytes = symbol.encode()
            keys[symbol] = key_bytes
        depth = book.depth_update()
        events = entry.events
        if len(events) <= limit:  # one piece: the usual case, no split made
            out = encode(
                symbol,
                events[0][1] - 1,
                events[-1][1],
                events,
                entry.ends,
                entry.offsets,
                depth,
                entry.last_offset,
                entry.stamps,
            )
            _append(outputs, partition, key_bytes, out)
        else:
            chunks = split_events(events, entry.ends, entry.offsets, limit)
            last = len(chunks) - 1
            for i in range(len(chunks)):
                piece, ends, offsets = chunks[i]
                out = encode(
                    symbol,
                    piece[0][1] - 1,
                    piece[-1][1],
                    piece,
                    ends,
                    offsets,
                    depth if i == last else None,
                    entry.last_offset,
                    entry.stamps,
                )
                _append(outputs, partition, key_bytes, out)
        orders[symbol] = orders.get(symbol, 0) + len(entry.offsets)
        if entry.client_ts:
            client_ts.setdefault(symbol, []).extend(entry.client_ts)
        dirty.add(symbol)
    return outputs, orders, client_ts


def _append(outputs: list[Output], partition: int, key: bytes, out: SymbolRecords) -> None:
    outputs.append((TOPIC_ORDER_STATUS, partition, key, out.order_status))
    outputs.append((TOPIC_FILLS, partition, key, out.fills))
    outputs.append((TOPIC_TRADES, partition, key, out.trades))
    if out.depth is not None:
        outputs.append((TOPIC_DEPTH, partition, key, out.depth))


def split_events(
    events: list[Event], ends: list[int], offsets: list[int], limit: int
) -> list[tuple[list[Event], list[int], list[int]]]:
    """Cut one symbol's events of a batch into pieces of at most `limit` events, each with
    the `ends` and input `offsets` of the commands it holds (a command whose events span
    a cut appears in both pieces). Each piece becomes its own records covering a contiguous
    seq range, so no record outgrows the broker's size limit however far one order sweeps."""
    if len(events) <= limit:
        return [(events, ends, offsets)]
    pieces = []
    command = 0
    for start in range(0, len(events), limit):
        stop = min(start + limit, len(events))
        piece_ends: list[int] = []
        piece_offsets: list[int] = []
        while command < len(ends) and ends[command] <= stop:
            if ends[command] > start:
                piece_ends.append(ends[command] - start)
                piece_offsets.append(offsets[command])
            command += 1
        if command < len(ends) and (not piece_ends or piece_ends[-1] < stop - start):
            piece_ends.append(stop - start)  # the command goes on in the next piece
            piece_offsets.append(offsets[command])
        pieces.append((events[start:stop], piece_ends, piece_offsets))
    return pieces
