"""What the migration demo recorded, and what it makes of it: pure functions (no I/O but
`save`/`load`/`plot`'s file), tested on recorded runs.

A run records, for the moved symbol, one sample per order: when it was sent (wall-clock
seconds) and its latency (sent -> its first ORDER_STATUS push; STALE_ROUTE refusals are
retried by the client library and included); the state machine's steps (entered / left,
from the execution history); the migration's own summary (the Cleanup task's output: pause,
duration, orders buffered, snapshot bytes) and the totals (sent, acknowledged, lost).

    summary = summarize(run)           # latency p50/p99 before / during / after the move
    plot(run, Path("demo.png"))        # per-order latency over time, steps marked
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PHASES = ("before", "during", "after")


@dataclass(frozen=True)
class Step:
    name: str
    entered_s: float
    exited_s: float | None = None


@dataclass
class Recorded:
    symbol: str
    strategy: str
    samples: list[tuple[float, float]] = field(default_factory=list)
    """(sent at, wall-clock s; latency ms) of each of the moved symbol's orders."""
    steps: list[Step] = field(default_factory=list)
    migration: dict[str, Any] = field(default_factory=dict)
    """The execution's summary (status, from, to, pause_ms, duration_ms, ...), plus
    switched_ms / resumed_ms when known."""
    began_s: float = 0.0
    ended_s: float = 0.0
    sent: int = 0
    acked: int = 0
    lost: int = 0
    """Orders with no reply, or acknowledged and never given an ORDER_STATUS."""


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50: float
    p99: float
    worst: float


@dataclass(frozen=True)
class Summary:
    status: str
    source: str
    target: str
    strategy: str
    pause_ms: float | None
    duration_ms: float | None
    orders_buffered: int
    snapshot_bytes: int
    lost: int
    latency: dict[str, Percentiles]
    migration_s: tuple[float, float] | None
    """When the execution began and ended (wall-clock s), the 'during' window."""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted or unsorted values; NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def window(run: Recorded) -> tuple[float, float] | None:
    """The move's window: the first step entered -> the last step left."""
    if not run.steps:
        return None
    start = min(s.entered_s for s in run.steps)
    ends = [s.exited_s if s.exited_s is not None else s.entered_s for s in run.steps]
    return start, max(ends)


def split(run: Recorded) -> dict[str, list[float]]:
    """The moved symbol's latencies by the phase its order was sent in."""
    out: dict[str, list[float]] = {name: [] for name in PHASES}
    span = window(run)
    for sent, latency in run.samples:
        if span is None or sent < span[0]:
            out["before"].append(latency)
        elif sent <= span[1]:
            out["during"].append(latency)
        else:
            out["after"].append(latency)
    return out


def summarize(run: Recorded) -> Summary:
    latency = {
        name: Percentiles(
            len(values),
            percentile(values, 0.5),
            percentile(values, 0.99),
            max(values, default=math.nan),
        )
        for name, values in split(run).items()
    }
    m = run.migration

    def number(key: str) -> float | None:
        value = m.get(key)
        return None if value is None else float(value)

    return Summary(
        status=str(m.get("status", "NOT STARTED")),
        source=str(m.get("from") or "-"),
        target=str(m.get("to") or "-"),
        strategy=str(m.get("strategy") or run.strategy),
        pause_ms=number("pause_ms"),
        duration_ms=number("duration_ms"),
        orders_buffered=int(m.get("orders_buffered") or 0),
        snapshot_bytes=int(m.get("snapshot_bytes") or 0),
        lost=run.lost,
        latency=latency,
        migration_s=window(run),
    )


def summary_lines(summary: Summary, symbol: str) -> list[str]:
    """The summary as text lines (the demo prints them, a test reads them)."""

    def ms(value: float | None) -> str:
        return "-" if value is None or math.isnan(value) else f"{value:,.1f} ms"

    lines = [
        f"migration of {symbol}: {summary.status} ({summary.strategy}) "
        f"{summary.source} -> {summary.target}",
        f"  pause {ms(summary.pause_ms)}, duration {ms(summary.duration_ms)}, "
        f"orders buffered {summary.orders_buffered:,}, snapshot {summary.snapshot_bytes:,} bytes, "
        f"lost {summary.lost}",
    ]
    for name in PHASES:
        p = summary.latency[name]
        lines.append(
            f"  {symbol} latency {name:<6}: p50 {ms(p.p50)}, p99 {ms(p.p99)}, "
            f"worst {ms(p.worst)} ({p.count:,} orders)"
        )
    return lines


# ---------------------------------------------------------------------- files


def save(run: Recorded, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(run)))


def load(path: Path) -> Recorded:
    raw = json.loads(path.read_text())
    steps = [Step(**s) for s in raw.pop("steps", [])]
    samples = [(float(a), float(b)) for a, b in raw.pop("samples", [])]
    return Recorded(**raw, steps=steps, samples=samples)


def plot(run: Recorded, path: Path) -> Path:
    """A PNG: the moved symbol's per-order latency over time (log scale) with each step of
    the state machine a vertical line and the pause shaded; below, the same around the
    move (1.5 s either side), the steps named."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    origin = run.began_s or (run.samples[0][0] if run.samples else 0.0)
    fig, (full, zoom) = plt.subplots(2, 1, figsize=(12, 8.5))
    xs = [sent - origin for sent, _ in run.samples]
    ys = [max(latency, 0.1) for _, latency in run.samples]
    colours = plt.get_cmap("tab10")
    m = run.migration
    pause: tuple[float, float] | None = None
    if m.get("switched_ms") and m.get("resumed_ms"):
        start = float(m.get("paused_ms") or m["switched_ms"]) / 1000 - origin
        pause = (start, float(m["resumed_ms"]) / 1000 - origin)
    span = window(run)
    for ax in (full, zoom):
        ax.scatter(xs, ys, s=4, alpha=0.55, color="tab:blue", label=f"{run.symbol}: sent -> status")
        for k, step in enumerate(run.steps):
            ax.axvline(step.entered_s - origin, color=colours(k % 10), linewidth=0.9,
                       linestyle="--", label=step.name if ax is zoom else None)  # fmt: skip
        if pause is not None:
            ax.axvspan(*pause, color="red", alpha=0.25,
                       label=f"pause {m.get('pause_ms')} ms" if ax is full else None)  # fmt: skip
        ax.set_yscale("log")
        ax.set_ylabel("latency (ms, log)")
    full.set_xlabel("seconds since the load began")
    if span is not None:
        zoom.set_xlim(span[0] - origin - 1.5, span[1] - origin + 1.5)
        zoom.set_xlabel("seconds since the load began: around the move, its steps")
        zoom.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    summary = summarize(run)
    full.set_title(
        f"{run.symbol} moved by {summary.strategy}: {summary.source} -> {summary.target}, "
        f"{summary.status}, pause {m.get('pause_ms')} ms, {summary.lost} lost",
        fontsize=9,
    )
    full.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
