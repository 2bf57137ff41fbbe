"""`hotshard demo` end to end: `hotshard up`, WebSocket clients trading, the monitor moving
HOT by itself, the summary and the plot. About a minute and a half on 2 shared cores:
marked `demo` (-m 'not demo' skips it)."""

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from hotshard.local.demo import report
from hotshard.local.demo.migration import HOT, DemoOptions, run

pytestmark = [pytest.mark.integration, pytest.mark.demo]


def test_the_demo_moves_the_hot_symbol_while_trading_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    options = DemoOptions(duration=45.0, after_s=5.0, rate=200.0, out=tmp_path)
    code = run(options, Console(file=out, width=200))
    text = out.getvalue()
    printed = capsys.readouterr().out.strip().splitlines()
    assert code == 0, text[-4000:]
    assert printed[-1].startswith("plot: ")
    png = Path(printed[-1].removeprefix("plot: "))
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert f"migration of {HOT}: SUCCEEDED (pre-copy)" in text
    assert re.search(r"pause [\d,.]+ ms", text), text[-3000:]
    assert "lost 0" in text
    assert re.search(r"edge: [\d,]+ orders sent in [\d,.]+ s \([\d,]+/s of 200/s offered\)", text)
    assert re.search(r"\([\d,]+ acks/s\).*\([\d,]+ pushes/s\)", text)
    assert "its first ORDER_STATUS push" in text  # the latency table: p50 p90 p99 max
    (saved,) = tmp_path.glob("demo-*.json")
    recorded = report.load(saved)
    summary = report.summarize(recorded)
    names = [s.name for s in recorded.steps]
    assert names[0] == "DetectHotSymbol" and "SwitchRouting" in names and "Cleanup" in names
    assert summary.target != summary.source and summary.snapshot_bytes > 0
    # trading went on before, during and after the move, for the moved symbol too
    assert all(summary.latency[p].count > 0 for p in report.PHASES), summary.latency
