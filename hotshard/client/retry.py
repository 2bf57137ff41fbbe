"""Retrying STALE_ROUTE transparently: the backoff policy, and which frame a rejection
answers.

The router stamps each order with the route epoch it read; when a symbol has moved, the
engine that gave it away rejects orders stamped with the old epoch: the router had already
answered `ack`, and the rejection arrives later as an ORDER_STATUS push {status: REJECTED,
reason: STALE_ROUTE} (seq 0) for that order_id. The order had no effect (the router marks
its record RETRY), so the client sends the same frame again (same order_id and contents:
the router produces it again, now with the new route) after a backoff, at most
`RetryPolicy.max_retries` times; the rejection is only shown (pushed) once the retries are
used up. An `error` reply with reason STALE_ROUTE is retried the same way. Which frame a
rejection answers is worked out per order_id by `Outstanding` (the engine answers one
order_id's frames in the order they were sent).
"""

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hotshard.client.frames import ANSWERS, Message


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter: retry n (1-based) waits a uniformly
    random time in [0, min(cap_s, base_s * 2^(n-1))] (`jitter=False`: exactly that bound),
    so clients a move or an outage turned away together do not come back together; after
    max_retries retries the rejection stands."""

    max_retries: int = 5
    base_s: float = 0.05
    cap_s: float = 1.0
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def ceiling(self, retry: int) -> float | None:
        """The longest wait before retry number `retry` (1 = the first), None: give up."""
        if retry < 1 or retry > self.max_retries:
            return None
        return float(min(self.cap_s, self.base_s * 2 ** (retry - 1)))

    def delay(self, retry: int) -> float | None:
        """Seconds before retry number `retry`, None: give up."""
        ceiling = self.ceiling(retry)
        if ceiling is None or not self.jitter:
            return ceiling
        return self.rng.uniform(0.0, ceiling)


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How a Client comes back after its connection dropped (a gateway restart, a network
    blip, API Gateway's 2-hour limit): full-jitter exponential backoff from base_s up to
    cap_s between tries, at most max_attempts tries (0: forever)."""

    max_attempts: int = 20
    base_s: float = 0.1
    cap_s: float = 5.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int) -> float | None:
        if attempt < 1 or (self.max_attempts and attempt > self.max_attempts):
            return None
        return self.rng.uniform(0.0, min(self.cap_s, self.base_s * 2 ** min(attempt - 1, 30)))


DEFAULT_POLICY = RetryPolicy()


@dataclass
class Sent:
    frame: Message  # without request_id
    retries: int  # retries already made for this frame
    at: float  # monotonic time it was (re)sent
    request_id: int = 0


class Outstanding:
    """Order frames the engine has not answered yet, per order_id, oldest first: what a
    STALE_ROUTE rejection (which names only the order_id) refers to. Entries older than
    `ttl_s` are forgotten (an answer that never came must not pin memory)."""

    def __init__(self, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._by_order: dict[str, deque[Sent]] = {}

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_order.values())

    def sent(self, frame: Message, retries: int = 0, request_id: int = 0) -> None:
        order_id = str(frame.get("order_id", ""))
        entry = Sent(frame, retries, self.clock(), request_id)
        self._by_order.setdefault(order_id, deque()).append(entry)

    def refused(self, order_id: str, request_id: int) -> None:
        """The router refused the frame (an error reply): it never reached an engine."""
        queue = self._by_order.get(order_id, deque())
        for sent in queue:
            if sent.request_id == request_id:
                queue.remove(sent)
                break
        self._tidy(order_id)

    def answered(self, order_id: str, status: str) -> Sent | None:
        """A non-stale status for the order: drop the oldest frame it answers."""
        queue = self._live(order_id)
        for sent in queue:
            if status in ANSWERS.get(str(sent.frame.get("action")), frozenset()):
                queue.remove(sent)
                self._tidy(order_id)
                return sent
        return None

    def stale(self, order_id: str) -> Sent | None:
        """A STALE_ROUTE rejection for the order: the oldest frame sent for it, removed."""
        queue = self._live(order_id)
        sent = queue.popleft() if queue else None
        self._tidy(order_id)
        return sent

    def _live(self, order_id: str) -> deque[Sent]:
        queue = self._by_order.get(order_id, deque())
        horizon = self.clock() - self.ttl_s
        while queue and queue[0].at < horizon:
            queue.popleft()
        return queue

    def _tidy(self, order_id: str) -> None:
        if not self._by_order.get(order_id):
            self._by_order.pop(order_id, None)
