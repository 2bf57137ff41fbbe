"""`hotshard-client`: place, replace and cancel orders, subscribe, print what comes back.

    hotshard-client --url ws://127.0.0.1:PORT/ --secret S --user alice \\
        place AAPL buy 10 18950            (also: replace, cancel, subscribe, send; --help)
"""

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from hotshard.client.frames import Message, describe
from hotshard.client.retry import DEFAULT_POLICY, RetryPolicy
from hotshard.client.session import Client, ClientError, local_token

ENV_URL = "HOTSHARD_WS_URL"
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
  echo '{"action":"order",...}' | hotshard-client send -
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
        choices=("LIMIT", "MARKET"),
        default="LIMIT",
        help="LIMIT (default) or MARKET",
    )
    place.add_argument(
        "--tif",
        type=str.upper,
        choices=("GTC", "IOC", "FOK"),
        default="GTC",
        help="time in force: GTC (default), IOC or FOK",
    )
    place.add_argument("--post-only", action="store_true", help="reject if it would trade")
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

    send = sub.add_parser(
        "send",
        help="send JSON frames, one per line, from a file or - (stdin)",
        description="Send each line of FILE as a frame (request_id is set by the client).",
    )
    send.add_argument("file", type=argparse.FileType("r"), help="a file of frames, or -")
    for command in (place, replace, cancel, subscribe, send):
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
        args.url, token, policy=policy, reply_timeout_s=args.timeout, on_retry=retrying
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
                )
            ]
        elif args.command == "replace":
            replies = [await client.replace(args.symbol, args.order_id, args.price, args.quantity)]
        elif args.command == "cancel":
            replies = [await client.cancel(args.symbol, args.order_id)]
        elif args.command == "subscribe":
            replies = [await client.subscribe(args.symbols)]
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
        for reply in replies:
            show(reply)
            refused = refused or reply.get("type") not in ("ack", "subscribed", "unsubscribed")
        async for push in client.pushes(timeout=args.wait if args.wait > 0 else None):
            show(push)
    return 1 if refused else 0


def _from_state_file(args: argparse.Namespace) -> None:
    """The URL (and, without a token or secret, the secret) of a running `hotshard up`."""
    try:
        with open(args.state_file) as f:
            cluster = json.load(f)
    except (OSError, ValueError):
        return
    args.url = cluster.get("ws_url", "")
    if not args.token and not args.secret:
        args.secret = cluster.get("jwt_secret", "")


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not args.url:
        _from_state_file(args)
    if not args.url:
        p.error(f"--url (or {ENV_URL}, or a running `hotshard up`) is required")
    token = _token(args, p)
    try:
        return asyncio.run(_run(args, token))
    except ClientError as exc:
        print(f"hotshard-client: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
