"""The fault suite's table: `python -m tests.faults.report FILE` renders the JSON lines the
cases appended to FILE (HOTSHARD_FAULTS_REPORT, set by `make faults`) as Markdown."""

import json
import sys
from pathlib import Path

COLUMNS = (
    ("case", "case"),
    ("down_s", "down (s)"),
    ("resume_s", "time to resume (s)"),
    ("acked", "acked"),
    ("acked_after_fault", "acked after the fault"),
    ("lost", "lost"),
    ("twice", "applied twice"),
    ("problems", "problems"),
    ("unpushed", "acked, never pushed"),
    ("engine_restarts", "engine restarts"),
    ("seconds", "case (s)"),
    ("load", "load avg"),
)


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        cells = ["-" if row.get(key) is None else str(row.get(key)) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[0])
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
