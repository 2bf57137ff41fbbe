"""A producer replaced while the router closes: neither it nor its replacement outlives
close() (the replacement's threads would go on calling a stopped broker for the rest of the
process, the 'Connection refused' lines after a test run)."""

import logging
import threading
import time
from typing import Any

import redis

from hotshard.edge.router import OrderRouter


class Closable:
    def __init__(self) -> None:
        self.closed = threading.Event()

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0

    def purge(self) -> None:
        pass

    def close(self) -> None:
        self.closed.set()


class SlowWarning(logging.Handler):
    """Holds the replacing thread at its 'producer replaced' line, as a busy process may."""

    def emit(self, record: logging.LogRecord) -> None:
        if "producer replaced" in record.getMessage():
            time.sleep(0.3)


def test_a_producer_replaced_while_the_router_closes_is_closed_with_its_replacement() -> None:
    # before: _replace_producer started the failed one's reaper after releasing the lock, so
    # a close() that came meanwhile joined a thread not yet started (RuntimeError) and never
    # closed the fresh producer
    failed, fresh = Closable(), Closable()
    r = redis.Redis(host="127.0.0.1", port=1)  # never reached: no request is made
    router: OrderRouter

    def new_producer() -> Any:
        closing = threading.Thread(target=router.close, name="closer")
        closing.start()
        assert router._closing.wait(5)  # close() has begun and waits for the lock
        threads.append(closing)
        return fresh

    router = OrderRouter(r, failed, new_producer=new_producer, delivery_timeout_s=0.5)
    threads: list[threading.Thread] = []
    errors: list[str] = []

    def hook(args: threading.ExceptHookArgs) -> None:
        errors.append(f"{args.thread.name if args.thread else '?'}: {args.exc_value!r}")

    threading.excepthook = hook
    handler = SlowWarning()
    logging.getLogger("hotshard.router").addHandler(handler)
    try:
        router._replace_producer(failed, "a fatal error")
        threads[0].join(10)
    finally:
        logging.getLogger("hotshard.router").removeHandler(handler)
        threading.excepthook = threading.__excepthook__
        r.close()
    assert not errors, errors
    assert not threads[0].is_alive()
    assert fresh.closed.wait(5), "the replacement outlived close()"
    assert failed.closed.wait(5), "the failed producer outlived close()"
