"""The migration demo's edge figures: rates over the sending window, not the cluster's
start and stop."""

from rich.console import Console

from hotshard.local.demo.migration import Tally, View, edge_lines, engines_table


def test_rates_run_from_the_first_send_to_the_last_ack_and_push() -> None:
    tally = Tally(sent=3000, acks=2990, pushes=12_000, retries=2)
    tally.first_send, tally.last_send = 100.0, 110.0
    tally.last_ack, tally.last_push = 112.0, 115.0
    (line,) = edge_lines(tally, 300.0, 0)
    assert "3,000 orders sent in 10.0 s (300/s of 300/s offered)" in line
    assert "2,990 acknowledged (249 acks/s)" in line  # 2,990 over 12 s
    assert "12,000 pushes (800 pushes/s)" in line  # over 15 s
    assert line.endswith("lost 0")


def test_acks_are_counted_over_the_sending_time_at_least() -> None:
    tally = Tally(sent=10, acks=10)
    tally.first_send, tally.last_send, tally.last_ack = 0.5, 10.5, 2.0
    (line,) = edge_lines(tally, 1.0, 1)
    assert "(1 acks/s)" in line and line.endswith("lost 1")


def test_the_engines_table_marks_a_pool_engine_warm_only_while_it_is_idle() -> None:
    # before: every engine started from the warm pool showed "warm", the moved symbol's
    # target too, after the move gave it the hot symbol
    def row(instance: str, symbols: int) -> dict[str, object]:
        return {
            "id": instance,
            "partitions": [6],
            "warm": True,
            "cpu": 5.0,
            "rate": 0.0,
            "symbols": symbols,
            "shadows": "",
        }

    view = View()
    view.engines = [row("i-target-1", 1), row("i-idle-2", 0)]
    console = Console(width=200, record=True)
    console.print(engines_table(view))
    text = console.export_text()
    assert "i-idle-2 (warm)" in text
    assert "i-target-1 " in text and "i-target-1 (warm)" not in text
