"""The replay tool: client orders in, every event out, deterministic, never stopped by
a bad line."""

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from engine import replay
from hotshard.commands import Command
from hotshard.domain import Action, OrderType, Side, TimeInForce
from hotshard.local.flow import zipf_stream

ORDERS = [
    {
        "action": "ADD",
        "symbol": "AAPL",
        "order_id": "1",
        "user_id": "alice",
        "side": "SELL",
        "price": 100,
        "quantity": 10,
    },
    {
        "action": "ADD",
        "symbol": "AAPL",
        "order_id": "2",
        "user_id": "bob",
        "side": "BUY",
        "price": 101,
        "quantity": 4,
    },
    "this is not json",
    {
        "action": "ADD",
        "symbol": "AAPL",
        "order_id": "3",
        "user_id": "bob",
        "side": "BUY",
        "price": 100,
        "quantity": -4,
    },
    {
        "action": "ADD",
        "symbol": "MSFT",
        "order_id": "1",
        "user_id": "carol",
        "side": "BUY",
        "price": 50,
        "quantity": 1,
    },
    {"action": "CANCEL", "symbol": "AAPL", "order_id": "1", "user_id": "alice"},
]


def write_orders(path: Path, orders: Sequence[object]) -> Path:
    path.write_text("\n".join(o if isinstance(o, str) else json.dumps(o) for o in orders) + "\n")
    return path


def run(tmp_path: Path, *extra: str, orders: Sequence[object] = ORDERS) -> list[dict[str, object]]:
    source = write_orders(tmp_path / "orders.jsonl", orders)
    out = tmp_path / "events.jsonl"
    assert replay.main(["--input", str(source), "--output", str(out), "--quiet", *extra]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_events_of_a_line_come_before_the_next_lines_and_carry_type_symbol_seq(tmp_path):
    events = run(tmp_path)
    assert all({"type", "symbol", "seq"} <= e.keys() for e in events)
    aapl = [e["seq"] for e in events if e["symbol"] == "AAPL"]
    assert aapl == list(range(1, len(aapl) + 1))
    assert [e["type"] for e in events[:7]] == [
        "order_status",
        "order_status",
        "trade",
        "fill",
        "fill",
        "order_status",
        "order_status",
    ]


def test_a_malformed_line_is_rejected_with_a_reason_and_the_replay_goes_on(tmp_path):
    events = run(tmp_path)
    rejected = [e for e in events if e.get("status") == "REJECTED"]
    assert [(e["symbol"], e["reason"], e["seq"]) for e in rejected] == [
        ("", "MALFORMED", 0),
        ("AAPL", "NON_POSITIVE_QUANTITY", 8),
    ]
    assert events[-1]["status"] == "CANCELLED"


def test_depth_levels_adds_exactly_one_depth_event_per_line(tmp_path):
    events = run(tmp_path, "--depth-levels", "2")
    depth = [e for e in events if e["type"] == "depth"]
    assert len(depth) == len(ORDERS)
    assert depth[0] == {
        "type": "depth",
        "symbol": "AAPL",
        "seq": 1,
        "bids": [],
        "asks": [[100, 10]],
    }
    assert depth[1]["asks"] == [[100, 6]]
    assert [e["type"] for e in events[:2]] == ["order_status", "depth"]
    assert events[8]["type"] == "depth" and events[7]["type"] == "order_status"


def test_symbols_config_lists_symbols_and_their_rules(tmp_path):
    config = tmp_path / "symbols.json"
    config.write_text(json.dumps({"AAPL": {"tick": 5}}))
    events = run(tmp_path, "--symbols", str(config))
    msft = [e for e in events if e["symbol"] == "MSFT"]
    assert msft == [
        {
            "type": "order_status",
            "symbol": "MSFT",
            "seq": 0,
            "order_id": "1",
            "user_id": "carol",
            "status": "REJECTED",
            "reason": "UNKNOWN_SYMBOL",
            "filled": 0,
            "leaves": 0,
        }
    ]
    off_tick = [e for e in events if e.get("order_id") == "2" and e["symbol"] == "AAPL"]
    assert off_tick[0]["reason"] == "PRICE_OFF_TICK"


def client_json(symbol: str, command: Command) -> dict[str, object]:
    action, order_id, user_id, side, otype, tif, post_only, price, qty = command[:9]
    if action == Action.CANCEL:
        return {"action": "CANCEL", "symbol": symbol, "order_id": order_id, "user_id": user_id}
    return {
        "action": "ADD",
        "symbol": symbol,
        "order_id": order_id,
        "user_id": user_id,
        "side": Side(side).name,
        "type": OrderType(otype).name,
        "tif": TimeInForce(tif).name,
        "post_only": post_only,
        "price": price,
        "quantity": qty,
    }


def test_two_runs_of_the_command_line_tool_are_byte_identical(tmp_path):
    orders = [client_json(s, c) for s, c in zipf_stream(3000, symbols=5)]
    source = write_orders(tmp_path / "flow.jsonl", orders)
    outputs = []
    for name in ("one", "two"):
        out = tmp_path / f"{name}.jsonl"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "engine.replay",
                "--input",
                str(source),
                "--output",
                str(out),
                "--depth-levels",
                "3",
            ],
            check=True,
            capture_output=True,
        )
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0].count(b'"type":"trade"') > 50


def test_help_explains_every_option():
    result = subprocess.run(
        [sys.executable, "-m", "engine.replay", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for option in ("--input", "--output", "--depth-levels", "--symbols", "--quiet"):
        assert option in result.stdout


def test_stops_icebergs_and_all_or_none_orders_replay_from_client_json(tmp_path):
    def order(oid: str, side: str, quantity: int, **fields: object) -> dict[str, object]:
        return {"symbol": "X", "order_id": oid, "user_id": oid, "side": side} | {
            "quantity": quantity,
            **fields,
        }

    orders = [
        order("ice", "SELL", 10, price=100, display_quantity=2),
        order("aon", "SELL", 50, price=100, all_or_none=True),
        order("stop", "BUY", 3, type="STOP", stop_price=100),
        order("sl", "BUY", 1, type="stop_limit", stop_price=101, price=90),
        order("bad", "BUY", 3, type="STOP", stop_price=100, tif="IOC", all_or_none=True),
        order("t", "BUY", 1, price=100),
    ]
    events = run(tmp_path, "--depth-levels", "3", orders=orders)
    depth = [(e["bids"], e["asks"]) for e in events if e["type"] == "depth"]
    # the iceberg shows its peak, the all-or-none order and the pending stops nothing
    assert depth[:5] == [([], [[100, 2]])] * 5
    status = [(e["order_id"], e["status"]) for e in events if e["type"] == "order_status"]
    assert ("bad", "REJECTED") in status
    assert [e.get("reason") for e in events if e.get("order_id") == "bad"] == [
        "ALL_OR_NONE_NOT_ALLOWED"
    ]
    # t trades 1 at 100; that trade triggers the stop, which takes the last 1 of the peak
    # and the whole of its refresh (2, behind the all-or-none order it passes by), so the
    # iceberg shows a third peak; the stop-limit at 101 stays pending
    assert status[-7:] == [
        ("t", "ACCEPTED"),
        ("ice", "PARTIALLY_FILLED"),
        ("t", "FILLED"),
        ("stop", "TRIGGERED"),
        ("ice", "PARTIALLY_FILLED"),
        ("ice", "PARTIALLY_FILLED"),
        ("stop", "FILLED"),
    ]
    assert depth[-1] == ([], [[100, 2]])
    assert [e["quantity"] for e in events if e["type"] == "trade"] == [1, 1, 2]
