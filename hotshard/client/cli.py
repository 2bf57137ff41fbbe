"""`hotshard-client`: place, replace and cancel orders, subscribe, print what comes back.

    hotshard-client --url ws://127.0.0.1:PORT/ --secret S --user alice \\
        place AAPL buy 10 18950            (also: replace, cancel, cancel-all, subscribe,
                                            ping, send; orders, fills, instruments, balance
                                            over HTTP with --http-url; --help)
"""

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from hotshard.client.frames import Message, StreamTracker, describe
from hotshard.client.http import HttpApi
from hotshard.client.retry import DEFAULT_POLICY, RetryPolicy
from hotshard.client.session import ORDER_HOLD_S, Client, ClientError, local_token

ENV_URL = "HOTSHARD_WS_URL"
ENV_HTTP_URL = "HOTSHARD_HTTP_URL"
HTTP_COMMANDS = ("orders", "fills", "instruments", "balance")
ENV_TOKEN = "HOTSHARD_TOKEN"
ENV_USER = "HOTSHARD_USER"
ENV_SECRET = "JWT_SECRET"
DEFAULT_STATE_FILE = ".hotshard/cluster.json"  # written by `hotshard up`

EXAMPLES = """\
examples (a local gateway: `python -m hotshard.local.edge ...` prints its ws_url):
  export HOTSHARD_WS_URL=ws://127.0.0.1:PORT/ JWT_SECRET=... HOTSHARD_USER=alice
  hotshard-client place AAPL buy 10 18950            limit buy 10 lots at 18950 ticks
  hotshard-client place AAPL sell 5 --type market --tif ioc
  hotshard-client replace AAPL o-1 18960 6           new price and total quantity
  hotshard-client cancel AAPL o-1
  hotshard-client subscribe AAPL MSFT --wait 0       print depth and trades until Ctrl-C
                                                     (a gap in a stream prints a `gap` line)
  hotshard-client cancel-all [--symbol AAPL] [--on-disconnect]
  hotshard-client ping
  echo '{"action":"order",...}' | hotshard-client send -
over HTTP (also export HOTSHARD_HTTP_URL=http://127.0.0.1:PORT, the gateway's http_url):
  hotshard-client orders [--symbol AAPL]             your open orders
  hotshard-client fills [--limit 20] [--before ID]   your fills, newest first
  hotshard-client instruments                        tick, lot, band and limits per symbol
  hotshard-client balance                            your balance per asset
exit status: 0 every request acknowledged, 1 a request refused, 2 usage or connection error.
"""


def _options(q: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The connection and output options; also accepted after the command (there with
    SUPPRESS defaults, so that they only override what was given)."""

    def d(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    q.add_argument(
        "--url",
        default=d(os.environ.get(ENV_URL, "")),
        help=f"WebSocket URL of the API, e.g. ws://127.0.0.1:PORT/ (env {ENV_URL})",
    )
    q.add_argument(
        "--http-url",
        default=d(os.environ.get(ENV_HTTP_URL, "")),
        help="HTTP API URL for orders, fills, instruments, balance, e.g. "
        f"http://127.0.0.1:PORT (env {ENV_HTTP_URL})",
    )
    auth = q.add_argument_group(
        "authentication", "either a token, or a local HS256 secret and a user to mint one"
    )
    auth.add_argument(
        "--token", default=d(os.environ.get(ENV_TOKEN, "")), help=f"a JWT (env {ENV_TOKEN})"
    )
    auth.add_argument(
        "--secret",
        default=d(os.environ.get(ENV_SECRET, "")),
        help=f"the local gateway's HS256 secret, to mint a token (env {ENV_SECRET})",
    )
    auth.add_argument(
        "--user",
        default=d(os.environ.get(ENV_USER, "")),
        help=f"the user (`sub` claim) of a minted token (env {ENV_USER})",
    )
    auth.add_argument(
        "--ttl", type=int, default=d(3600), help="lifetime of a minted token, seconds (3600)"
    )
    q.add_argument(
        "--state-file",
        default=d(DEFAULT_STATE_FILE),
        help="without --url: the URL and secret of the cluster `hotshard up` runs, from "
        f"its state file ({DEFAULT_STATE_FILE})",
    )
    q.add_argument(
        "--wait",
        type=float,
        default=d(2.0),
        help="after the request, print pushes for this many seconds; 0: until Ctrl-C (2)",
    )
    q.add_argument(
        "--retries",
        type=int,
        default=d(DEFAULT_POLICY.max_retries),
        help=f"STALE_ROUTE retries per frame ({DEFAULT_POLICY.max_retries})",
    )
    q.add_argument(
        "--backoff-ms",
        type=float,
        default=d(DEFAULT_POLICY.base_s * 1000),
        help="first retry's delay; each next one doubles (50)",
    )
    q.add_argument(
        "--max-backoff-ms",
        type=float,
        default=d(DEFAULT_POLICY.cap_s * 1000),
        help="longest delay between retries (1000)",
    )
    q.add_argument(
        "--order-hold-ms",
        type=float,
        default=d(ORDER_HOLD_S * 1000),
        help="your ORDER_STATUS and FILL pushes of a symbol are printed in seq order: the "
        "longest one waits for one before it; 0: as they arrive (250)",
    )
    q.add_argument(
        "--json", action="store_true", default=d(False), help="print frames as raw JSON lines"
    )
    q.add_argument(
        "--timeout", type=float, default=d(15.0), help="seconds to wait for a reply (15)"
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hotshard-client",
        description="Trade against a hotshard WebSocket API: place, replace and cancel "
        "orders, subscribe to symbols, print replies and pushes. STALE_ROUTE rejections "
        "(a symbol that moved while the order was on its way) are retried transparently.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _options(p, suppress=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    place = sub.add_parser("place", help="place an order (ADD)", description="Place an order.")
    place.add_argument("symbol", help="the symbol, e.g. AAPL")
    place.add_argument(
        "side", type=str.upper, choices=("BUY", "SELL"), metavar="SIDE", help="buy or sell"
    )
    place.add_argument("quantity", type=int, help="lots")
    place.add_argument("price", type=int, nargs="?", help="ticks (a LIMIT order needs one)")
    place.add_argument(
        "--type",
        dest="order_type",
        type=str.upper,
        choices=("LIMIT", "MARKET", "STOP", "STOP_LIMIT"),
        default="LIMIT",
        help="LIMIT (default), MARKET, STOP or STOP_LIMIT (these two need --stop-price)",
    )
    place.add_argument(
        "--tif",
        type=str.upper,
        choices=("GTC", "IOC", "FOK"),
        default="GTC",
        help="time in force: GTC (default), IOC or FOK",
    )
    place.add_argument("--post-only", action="store_true", help="reject if it would trade")
    place.add_argument(
        "--stop-price", type=int, help="STOP / STOP_LIMIT: the last trade price that triggers it"
    )
    place.add_argument(
        "--display-quantity", type=int, help="an iceberg: show only this much of the quantity"
    )
    place.add_argument(
        "--all-or-none", action="store_true", help="trade only the whole quantity at once"
    )
    place.add_argument("--order-id", default="", help="your id for it (default: generated)")

    replace = sub.add_parser(
        "replace", help="change an order's price and total quantity", description="REPLACE."
    )
    replace.add_argument("symbol", help="the order's symbol")
    replace.add_argument("order_id", help="the order's id")
    replace.add_argument("price", type=int, help="the new price, ticks")
    replace.add_argument("quantity", type=int, help="the new TOTAL quantity (filled included)")

    cancel = sub.add_parser("cancel", help="cancel an order", description="CANCEL.")
    cancel.add_argument("symbol", help="the order's symbol")
    cancel.add_argument("order_id", help="the order's id")

    subscribe = sub.add_parser(
        "subscribe",
        help="print depth and trades of symbols",
        description="Subscribe and print DEPTH and TRADE pushes (and your own fills).",
    )
    subscribe.add_argument("symbols", nargs="+", help="symbols to watch")

    cancel_all = sub.add_parser(
        "cancel-all",
        help="cancel all your open orders (of one symbol)",
        description="Cancel all your open orders over the WebSocket (cancel_all); their "
        "CANCELLED statuses follow as pushes.",
    )
    cancel_all.add_argument("--symbol", default="", help="only this symbol's orders")
    cancel_all.add_argument(
        "--on-disconnect",
        action="store_true",
        help="instead: opt this connection in to cancel-on-disconnect (then stay for --wait)",
    )
    ping = sub.add_parser("ping", help="ping the API (pong)", description="Send a ping.")

    orders = sub.add_parser(
        "orders",
        help="your open orders (HTTP GET /orders)",
        description="Print your open orders, oldest first (needs --http-url).",
    )
    orders.add_argument("--symbol", default="", help="only this symbol's")
    orders.add_argument("--limit", type=int, default=0, help="at most this many (1-1000)")
    fills = sub.add_parser(
        "fills",
        help="your fills, newest first (HTTP GET /fills)",
        description="Print a page of your fills, newest first; the last line names the "
        "cursor of the next page (--before). Needs --http-url.",
    )
    fills.add_argument("--symbol", default="", help="only this symbol's")
    fills.add_argument("--limit", type=int, default=0, help="at most this many (1-1000; 100)")
    fills.add_argument("--before", default="", help="the `next` cursor of the previous page")
    instruments = sub.add_parser(
        "instruments",
        help="tick, lot, band and limits of the listed symbols (HTTP GET /instruments)",
        description="Print each listed symbol's trading rules (needs --http-url).",
    )
    instruments.add_argument("--symbol", default="", help="only this symbol")
    balance = sub.add_parser(
        "balance",
        help="your balance per asset (HTTP GET /balance)",
        description="Print your available balance per asset (needs --http-url).",
    )

    send = sub.add_parser(
        "send",
        help="send JSON frames, one per line, from a file or - (stdin)",
        description="Send each line of FILE as a frame (request_id is set by the client).",
    )
    send.add_argument("file", type=argparse.FileType("r"), help="a file of frames, or -")
    for command in (
        place,
        replace,
        cancel,
        cancel_all,
        ping,
        subscribe,
        send,
        orders,
        fills,
        instruments,
        balance,
    ):
        _options(command, suppress=True)
    return p


def _token(args: argparse.Namespace, p: argparse.ArgumentParser) -> str:
    if args.token:
        return str(args.token)
    if args.secret and args.user:
        return local_token(args.secret, args.user, args.ttl)
    p.error("give --token, or --secret and --user (or their environment variables)")
    raise AssertionError("unreachable")


async def _run(args: argparse.Namespace, token: str) -> int:
    def show(message: Message) -> None:
        print(json.dumps(message) if args.json else describe(message), flush=True)

    def retrying(frame: Message, retry: int, delay: float) -> None:
        if not args.json:
            print(
                f"retry   {frame.get('action')} {frame.get('symbol')} {frame.get('order_id')}: "
                f"STALE_ROUTE, resending in {delay * 1000:.0f} ms ({retry}/{args.retries})",
                flush=True,
            )

    policy = RetryPolicy(args.retries, args.backoff_ms / 1000, args.max_backoff_ms / 1000)
    client = await Client.connect(
        args.url,
        token,
        policy=policy,
        reply_timeout_s=args.timeout,
        on_retry=retrying,
        http_url=args.http_url or "",
        order_hold_s=args.order_hold_ms / 1000,
    )
    refused = False
    async with client:
        if args.command == "place":
            order_id = args.order_id or f"c-{uuid.uuid4().hex[:12]}"
            replies = [
                await client.place(
                    args.symbol,
                    order_id,
                    args.side,
                    args.quantity,
                    price=args.price,
                    order_type=args.order_type,
                    tif=args.tif,
                    post_only=args.post_only,
                    stop_price=args.stop_price,
                    display_quantity=args.display_quantity,
                    all_or_none=args.all_or_none,
                )
            ]
        elif args.command == "replace":
            replies = [await client.replace(args.symbol, args.order_id, args.price, args.quantity)]
        elif args.command == "cancel":
            replies = [await client.cancel(args.symbol, args.order_id)]
        elif args.command == "subscribe":
            replies = [await client.subscribe(args.symbols)]
        elif args.command == "cancel-all":
            if args.on_disconnect:
                replies = [await client.cancel_on_disconnect(True)]
            else:
                replies = [await client.cancel_all(args.symbol)]
        elif args.command == "ping":
            replies = [await client.ping()]
        else:
            futures = []
            for line in args.file:
                if line.strip():
                    try:
                        frame = json.loads(line)
                    except ValueError:
                        print(f"not JSON, skipped: {line.strip()[:80]}", file=sys.stderr)
                        continue
                    futures.append(await client.send(frame))
            replies = [await f for f in futures]
        answered = ("ack", "subscribed", "unsubscribed", "cancel_all", "cancel_on_disconnect")
        for reply in replies:
            show(reply)
            refused = refused or reply.get("type") not in (*answered, "pong")
        tracker = StreamTracker()
        async for push in client.pushes(timeout=args.wait if args.wait > 0 else None):
            gap = tracker.observe(push)
            if gap is not None and not args.json:
                print(
                    f"gap     {gap.kind} {gap.symbol}: last seen seq {gap.seen}, this push "
                    f"follows {gap.prev_seq} (missed pushes; resynchronise: orders, fills, "
                    "or GET /depth)",
                    flush=True,
                )
            show(push)
    return 1 if refused else 0


def _from_state_file(args: argparse.Namespace) -> None:
    """The URL (and, without a token or secret, the secret) of a running `hotshard up`."""
    try:
        with open(args.state_file) as f:
            cluster = json.load(f)
    except (OSError, ValueError):
        return
    args.url = args.url or cluster.get("ws_url", "")
    args.http_url = args.http_url or cluster.get("http_url", "")
    if not args.token and not args.secret:
        args.secret = cluster.get("jwt_secret", "")


def _http(args: argparse.Namespace, token: str) -> int:
    """orders, fills, instruments, balance: one HTTP call, its body printed."""
    api = HttpApi(args.http_url, token, timeout_s=args.timeout)
    if args.command == "orders":
        status, body = api.open_orders(args.symbol, args.limit)
    elif args.command == "fills":
        status, body = api.fills(args.symbol, args.limit, args.before)
    elif args.command == "instruments":
        status, body = api.instruments(args.symbol)
    else:
        status, body = api.balance()
    if args.json or status >= 400:
        print(json.dumps(body) if args.json else describe(body), flush=True)
        return 1 if status >= 400 else 0
    for line in describe_http(args.command, body):
        print(line, flush=True)
    return 0


def describe_http(command: str, body: Message) -> list[str]:
    """Readable lines of an HTTP reply."""
    if command == "orders":
        lines = [
            f"order   {o['symbol']} {o['order_id']} {o['side']} {o['quantity']} @ {o['price']}"
            f" {o['status'] or o['routing']} filled {o['filled']} leaves {o['leaves']}"
            for o in body.get("orders", [])
        ]
        return [*lines, f"{len(lines)} open{' (more: raise --limit)' if body.get('more') else ''}"]
    if command == "fills":
        lines = [
            f"fill    {f['symbol']} {f['order_id']} {f['side']} {f['quantity']} @ {f['price']}"
            f" {f['liquidity']} trade {f['trade_id']} seq {f['seq']} id {f['id']}"
            for f in body.get("fills", [])
        ]
        more = f" next page: --before {body['next']}" if body.get("next") else ""
        return [*lines, f"{len(lines)} fills{more}"]
    if command == "instruments":
        return [
            f"{i['symbol']:<12} tick {i['tick']} lot {i['lot']} price {i['price_min']}.."
            f"{i['price_max'] or 'no max'} max qty {i['max_quantity'] or '-'} max notional "
            f"{i['max_notional'] or '-'} {i['status']}"
            for i in body.get("instruments", [])
        ]
    balances = body.get("balances") or {}
    checked = "" if body.get("balance_check") else " (orders do not reserve: balance checks off)"
    return [f"{asset:<12} {amount}" for asset, amount in sorted(balances.items())] + [
        f"{len(balances)} assets{checked}"
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not args.url or not args.http_url:
        _from_state_file(args)
    if args.command in HTTP_COMMANDS:
        if not args.http_url:
            p.error(
                f"--http-url (or {ENV_HTTP_URL}, or a running `hotshard up`) is required for "
                f"{args.command}"
            )
    elif not args.url:
        p.error(f"--url (or {ENV_URL}, or a running `hotshard up`) is required")
    token = _token(args, p)
    try:
        if args.command in HTTP_COMMANDS:
            return _http(args, token)
        return asyncio.run(_run(args, token))
    except ClientError as exc:
        print(f"hotshard-client: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
