"""The compiled book and the pure-Python source are one book: same bytes out.

Each build runs in its own process (an import loads one of them), replays the streams of
tests.engine.book.digest and prints digests of all events, depth updates and snapshots.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.native import ENV, stale_reason

ROOT = Path(__file__).resolve().parents[3]


def digests(build: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "tests.engine.book.digest"],
        cwd=ROOT,
        env={**os.environ, ENV: build},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return result.stdout.splitlines()


def test_the_compiled_build_is_built_and_up_to_date():
    assert stale_reason() == "", "run `make native`"


def test_both_builds_give_identical_events_depth_and_snapshots():
    native, python = digests("native"), digests("python")
    assert native[0] == "build native" and python[0] == "build python"
    assert len(native) == 8
    assert native[1:] == python[1:]


@pytest.mark.parametrize("choice", ["python", "native"])
def test_the_build_asked_for_is_the_one_loaded(choice):
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import engine.book, engine.book.book as b; print(engine.book.BUILD, b.__file__)",
        ],
        cwd=ROOT,
        env={**os.environ, ENV: choice},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0] == choice
    assert out[1].endswith(".py") == (choice == "python")


def test_an_unknown_choice_is_refused():
    from engine.native import choose_build  # noqa: PLC0415

    with pytest.raises(ImportError, match="auto, python or native"):
        choose_build({ENV: "fast"})
