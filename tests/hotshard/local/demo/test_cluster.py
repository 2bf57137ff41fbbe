"""hotshard.local.demo.cluster: the generated flow as WebSocket frames, and a short run of the
demo through real services (Tansu, Redis, two engines, the gateway process)."""

import io

import pytest
from rich.console import Console

from hotshard.commands import add, cancel, replace
from hotshard.domain import OrderType, Side, TimeInForce
from hotshard.local.demo.cluster import frame_of, lanes, run
from hotshard.local.flow import zipf_stream


def test_commands_become_the_frames_a_client_sends():
    limit = add("7", "u3", Side.SELL, 105, 20, tif=TimeInForce.IOC)
    assert frame_of("S001", limit, "trader-3") == {
        "action": "order",
        "symbol": "S001",
        "order_id": "7",
        "user_id": "trader-3",
        "side": "SELL",
        "type": "LIMIT",
        "tif": "IOC",
        "quantity": 20,
        "price": 105,
    }
    market = frame_of("S001", add("8", "u3", Side.BUY, 0, 5, order_type=OrderType.MARKET), "t")
    assert market["type"] == "MARKET" and "price" not in market
    assert frame_of("S001", cancel("7", "u3"), "t") == {
        "action": "cancel",
        "symbol": "S001",
        "order_id": "7",
    }
    assert frame_of("S001", replace("7", "u3", 106, 30), "t")["action"] == "replace"


def test_an_order_and_its_cancel_travel_the_same_connection():
    stream = zipf_stream(2_000, seed=3, symbols=10)
    split = lanes(stream, 4)
    assert sum(len(lane) for lane in split) == len(stream)
    where = {}
    for k, lane in enumerate(split):
        for _symbol, frame in lane:
            if frame["action"] == "order":
                where[frame["order_id"]] = k
                assert frame["user_id"] == f"trader-{k}"
            elif frame["action"] == "cancel":
                assert where[frame["order_id"]] == k  # placed earlier, same client


@pytest.mark.integration
def test_the_demo_drives_orders_through_the_gateway_and_stops_by_itself():
    out = io.StringIO()
    console = Console(file=out, width=150)
    assert run(400, 8, 5, 5, console, clients=3, duration=15) == 0
    text = out.getvalue()
    assert "symbols listed through hotshard.route" in text
    assert "400 of 400 generated orders sent" in text and "0 lost" in text
    assert "trader-2" in text and "watcher" in text and "rejects by reason" in text
