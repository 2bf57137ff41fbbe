"""The frames of the WebSocket API (docs/asyncapi.yaml) as the client sees them: which
statuses answer a request, what a STALE_ROUTE refusal looks like, gaps in the pushed
streams (`StreamTracker`), and one readable line per frame (`describe`, what
hotshard-client prints)."""

import json
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]

STALE_ROUTE = "STALE_ROUTE"
# Statuses that answer a frame of each action (fills and the fill statuses answer nothing).
ANSWERS = {
    "order": frozenset({"ACCEPTED", "REJECTED", "EXPIRED"}),
    "replace": frozenset({"REPLACED", "REJECTED", "CANCELLED"}),
    "cancel": frozenset({"CANCELLED", "REJECTED"}),
}


def is_stale(message: Message) -> bool:
    """A STALE_ROUTE refusal: an error reply, or the engine's REJECTED order_status push."""
    if message.get("type") == "error":
        return message.get("reason") == STALE_ROUTE
    if message.get("type") == "ORDER_STATUS":
        data = message.get("data") or {}
        return data.get("status") == "REJECTED" and data.get("reason") == STALE_ROUTE
    return False


@dataclass(frozen=True, slots=True)
class StreamGap:
    """Pushes were missed on one stream: the last one seen had seq `seen`, the one that
    came names `prev_seq` before it. Resynchronise (GET /orders, GET /fills, GET /depth)."""

    kind: str
    symbol: str
    seen: int
    prev_seq: int
    seq: int


@dataclass
class StreamTracker:
    """The last seq seen per pushed stream ((push type, symbol): a connection only gets its
    own user's ORDER_STATUS and FILL pushes), and the gaps `prev_seq` reveals. The first
    push of a stream sets its baseline (unless `strict`: then a first push whose prev_seq
    is not 0 is a gap too)."""

    strict: bool = False
    last: dict[tuple[str, str], int] = field(default_factory=dict)
    gaps: list[StreamGap] = field(default_factory=list)

    def observe(self, message: Message) -> StreamGap | None:
        prev = message.get("prev_seq")
        data = message.get("data") or {}
        if not isinstance(prev, int) or isinstance(prev, bool):
            return None  # not a push, or one no book numbered (seq 0)
        key = (str(message.get("type")), str(data.get("symbol", "")))
        seq = int(data.get("seq", 0))
        seen = self.last.get(key)
        self.last[key] = seq
        if seen is None and not self.strict:
            return None
        if prev == (seen or 0):
            return None
        gap = StreamGap(key[0], key[1], seen or 0, prev, seq)
        self.gaps.append(gap)
        return gap


def _levels(levels: Any) -> str:
    return " ".join(f"{p}x{q}" for p, q in levels) if levels else "-"


def describe(message: Message) -> str:
    """One readable line for a reply or a push."""
    kind = message.get("type")
    data = message.get("data") or {}
    if kind == "ack":
        dup = " (duplicate)" if message.get("duplicate") else ""
        return (
            f"ack     {message.get('action')} {message.get('symbol')} {message.get('order_id')}"
            f" -> {message.get('topic')}[{message.get('partition')}]@{message.get('offset')}"
            f" epoch {message.get('route_epoch')}{dup}"
        )
    if kind == "error":
        ids = "".join(f" {message[k]}" for k in ("symbol", "order_id") if k in message)
        return (
            f"error   {message.get('reason')} ({message.get('code')}){ids}: "
            f"{message.get('detail', '')}"
        )
    if kind in ("subscribed", "unsubscribed"):
        return f"{kind} {', '.join(message.get('symbols') or [])}"
    if kind == "pong":
        return f"pong    ts_ns {message.get('ts_ns')}"
    if kind == "cancel_all":
        failed = ", ".join(
            f"{f.get('order_id')} {f.get('reason')}" for f in message.get("failed") or []
        )
        return (
            f"cancel_all {message.get('symbol') or '(all symbols)'}: cancelled "
            f"{len(message.get('cancelled') or [])}"
            f" {' '.join(message.get('cancelled') or [])}".rstrip()
            + (
                f"; still being sent: {' '.join(message['pending'])}"
                if message.get("pending")
                else ""
            )
            + (f"; failed: {failed}" if message.get("failed") else "")
        )
    if kind == "cancel_on_disconnect":
        return f"cancel_on_disconnect {'on' if message.get('enabled') else 'off'}"
    if kind == "FILL":
        return (
            f"FILL    {data.get('symbol')} {data.get('order_id')} {data.get('quantity')} @ "
            f"{data.get('price')} {data.get('liquidity')} trade {data.get('trade_id')}"
            f" seq {data.get('seq')}"
        )
    if kind == "ORDER_STATUS":
        reason = f" {data['reason']}" if data.get("reason") else ""
        return (
            f"STATUS  {data.get('symbol')} {data.get('order_id')} {data.get('status')}{reason}"
            f" filled {data.get('filled')} leaves {data.get('leaves')} seq {data.get('seq')}"
        )
    if kind == "TRADE":
        return (
            f"TRADE   {data.get('symbol')} {data.get('quantity')} @ {data.get('price')} "
            f"maker {data.get('maker_order_id')} taker {data.get('taker_order_id')} "
            f"({data.get('taker_side')}) seq {data.get('seq')}"
        )
    if kind == "DEPTH":
        return (
            f"DEPTH   {data.get('symbol')} bids {_levels(data.get('bids'))} | "
            f"asks {_levels(data.get('asks'))} seq {data.get('seq')}"
        )
    return json.dumps(message, separators=(",", ":"))
