"""What the edge's Lambda handlers apply to their process once per cold start."""

import functools
import gc
import threading
import warnings
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")
H = TypeVar("H", bound=Callable[..., Any])

YOUNG_GENERATION = 50_000
"""Allocations between two young collections (CPython's default: 700). A request allocates
a few hundred objects, nearly all freed by reference counting, so with the default the
cyclic collector ran every few requests: 5-7% of the local gateway's CPU (perf, 1,000
orders/s offered), in gc_collect_main and its traversals, finding next to nothing."""


def tune_gc() -> None:
    """Collect the young generation less often, and move what the cold start built (modules,
    clients, settings) out of the collector's view so no later pass walks it again."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION, older, oldest)


def metrics_enabled() -> bool:
    """Will Powertools publish the metrics the handlers add? Not where they are disabled
    (POWERTOOLS_METRICS_DISABLED, or POWERTOOLS_DEV: the local edge, tests), and there the
    handlers skip add_metric: Powertools still keeps every value added, formats all of
    them into a debug message on each call (whatever the log level) and prints an EMF
    line to stdout at every 100th value, since the flush that would clear them is what
    it disables (~46 us a call measured; half of the local gateway's GIL samples once
    its requests were batched)."""
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled  # noqa: PLC0415

    return not is_metrics_disabled()


def quiet_empty_flush() -> None:
    """Where metrics are disabled the handlers add none (metrics_enabled), and Powertools'
    log_metrics then warns "No application metrics to publish" at the end of every call
    (26,429 UserWarnings in one fuzz run). Only that message is silenced."""
    warnings.filterwarnings(
        "ignore", message="No application metrics to publish", category=UserWarning
    )


def _no_correlation_id(_event: Any) -> str | None:
    return None


def logs_own_request(
    logger: Any, correlation_id: Callable[[Any], str | None] = _no_correlation_id
) -> Callable[[H], H]:
    """A Lambda handler whose log lines name its own invocation when it is invoked from
    several threads at once (the local gateway's HTTP and WebSocket handler threads, the
    local feeder's thread per topic). The keys Powertools' inject_lambda_context and
    set_correlation_id append are the process's logger's, which Lambda uses one invocation
    at a time: side by side, a line named whichever invocation had started last. Set per
    thread first (Powertools' per-thread keys take precedence in its formatter), the
    invocation's request id and `correlation_id(event)` (None: none) are on every line it
    logs, the event line of inject_lambda_context's log_event too; in Lambda, the same
    values."""

    def wrap(handler: H) -> H:
        @functools.wraps(handler)
        def invoke(event: Any, context: Any) -> Any:
            logger.thread_safe_append_keys(
                function_request_id=context.aws_request_id,
                correlation_id=correlation_id(event),
            )
            return handler(event, context)

        return cast(H, invoke)

    return wrap


def traced_where_on(tracer: Any, handler: H) -> H:
    """`handler` in an X-Ray subsegment where tracing is on (in Lambda, tracing ACTIVE).
    Where Powertools turned tracing off (outside Lambda: the local gateway and feeder,
    tests) its decorator still opened and annotated a dummy subsegment per invocation,
    ~6% of the router's CPU per order in the local gateway: there `handler` runs bare."""
    traced = tracer.capture_lambda_handler(capture_response=False)(handler)

    @functools.wraps(handler)
    def invoke(event: Any, context: Any) -> Any:
        return handler(event, context) if tracer.disabled else traced(event, context)

    return cast(H, invoke)


EMF_VALUES_MAX = 100
"""Values one metric takes in one EMF document."""


def add_values(metrics: Any, name: str, unit: Any, values: list[float]) -> None:
    """`values` (at most EMF_VALUES_MAX) as one metric of the invocation's EMF document, in
    one add_metric call: Powertools' add_metric formats the metric's whole value list into
    a debug message on every call (whatever the log level), so 99 calls cost ~42 ms a
    batch at load 15 (quadratic), this ~0.04 ms. The first value goes through add_metric
    (its name and unit checks, the entry); the rest join that entry's list, which is what
    99 more calls would have built, so CloudWatch computes the same statistics."""
    if not values:
        return
    if len(values) > EMF_VALUES_MAX:
        raise ValueError(f"{len(values)} values for {name}: EMF takes {EMF_VALUES_MAX}")
    metrics.add_metric(name=name, unit=unit, value=values[0])
    metrics.metric_set[name]["Value"].extend(float(v) for v in values[1:])


class ColdStart(Generic[T]):
    """A handler's cold-start object (what functools.cache gave), built once even when the
    first calls come at once. In Lambda a container serves one request at a time; the
    local gateway calls the handler from its threads, and functools.cache let each
    concurrent first call build its own: the extra EdgeApis' producers were never closed
    (and tune_gc's freeze keeps them from the collector: alive for good, reconnecting to
    their broker after it stopped)."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: T | None = None

    def __call__(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    def built(self) -> bool:
        return self._value is not None

    def cache_clear(self) -> None:
        """Forget it (the caller closed it): the next call builds a new one."""
        with self._lock:
            self._value = None


class PerThread(Generic[T]):
    """A handler's cold-start object, one per calling thread. In Lambda a container runs one
    invocation at a time, on one thread, so this is one object per container; the local
    feeder invokes the stream handler from one thread per topic, as AWS invokes it from
    each topic's event source mapping in a container of its own, so each gets its own
    (its in-memory sequence guards and its clients are never shared between topics)."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._local = threading.local()
        self._all: list[T] = []

    def __call__(self) -> T:
        value: T | None = getattr(self._local, "value", None)
        if value is None:
            value = self._build()
            self._local.value = value
            with self._lock:
                self._all.append(value)
        return value

    def built(self) -> list[T]:
        """Every thread's, in the order they were built."""
        with self._lock:
            return list(self._all)

    def cache_clear(self) -> None:
        """Forget them all (the caller closed them): each thread's next call builds anew."""
        with self._lock:
            self._all = []
            self._local = threading.local()
