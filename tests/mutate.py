"""`make mutate`: mutmut over one module at a time, each in a directory of its own.

mutmut 3 generates the mutants of every `source_paths` entry before it runs any (the book's
alone took 9.4 min at load ~25), and a module's results live in its `mutants/` folder. So
each module here gets build/mutate/<module>/: a copy of the tracked files (and the
generated protobuf modules) whose pyproject's [tool.mutmut] names only that module and its
own tests. Files are copied with their times, so a module whose source did not change keeps
its mutants and results from run to run (--fresh forgets them).

    python -m tests.mutate engine/book/ended.py            # one module
    python -m tests.mutate hotshard/edge/router.py --mutants '*_client_ts*'
    python -m tests.mutate --all                            # every module, one after another
    python -m tests.mutate --summary                        # counts per module, no run
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build" / "mutate"

BOOK_TESTS = ("tests/engine/book/",)
MODULES: dict[str, tuple[str, ...]] = {
    "engine/book/book.py": BOOK_TESTS,
    # its own tests without the hypothesis property (the ring against a plain list of the
    # last `window` ended orders): the same comparison on seeded streams instead. Every
    # book test calls the ring (~40 s a mutant at load ~25), the property's 300 examples
    # ~65 s a mutant; these ~2 s
    # the packed snapshot columns (compiled with the book): their own unit tests
    "engine/book/packed.py": ("tests/engine/book/test_packed.py",),
    "engine/book/ended.py": tuple(
        f"tests/engine/book/test_ended.py::{name}"
        for name in (
            "test_it_remembers_the_last_window_on_seeded_streams",
            "test_ids_that_differ_only_by_user_or_length_are_told_apart",
            "test_a_window_of_0_remembers_nothing",
            "test_many_orders_through_a_large_window",
            "test_ids_whose_hashes_collide_are_told_apart",
            "test_an_order_with_empty_ids_ended_first",
            "test_ids_that_fill_the_arena_exactly_when_nothing_is_held",
            "test_ids_that_end_where_the_oldest_held_ids_start",
            "test_the_arena_stays_within_what_the_window_holds",
        )
    ),
    # the codec's tests, and the latency histogram's (bucket_of, count_latencies live here)
    "engine/fastwire.py": ("tests/engine/test_fastwire.py", "tests/engine/service/test_metrics.py"),
    "hotshard/codec.py": ("tests/hotshard/test_codec.py",),
    "hotshard/wire.py": ("tests/hotshard/test_wire.py",),
    "hotshard/domain.py": ("tests/hotshard/test_domain.py",),
    "hotshard/edge/limits.py": (
        "tests/hotshard/edge/test_limits.py",
        "tests/hotshard/edge/test_limits_boundaries.py",
    ),
    # the router's own checks before anything reaches Redis or Kafka (_prepare's user and
    # limits checks, client_ts_ns, page sizes, cursors), its batched path (submit_many) and
    # cancel_all: run with --mutants naming them (DEFAULT_ROUTER_MUTANTS)
    "hotshard/edge/router.py": (
        "tests/hotshard/edge/test_router_validation.py",
        "tests/hotshard/edge/test_batch.py",
    ),
}
"""Each module mutmut may mutate, and the tests run against its mutants."""

BATCH_ROUTER_MUTANTS = (
    "hotshard.edge.router.*submit_many__mutmut*",
    "hotshard.edge.router.*_staged_flights__mutmut*",
    "hotshard.edge.router.*_fly__mutmut*",
    "hotshard.edge.router.*_landed_into__mutmut*",
    "hotshard.edge.router.x__raising__mutmut*",
    "hotshard.edge.router.x__all_answered__mutmut*",
)
"""The router's batched path (submit_many and what only it calls)."""

CANCEL_ALL_ROUTER_MUTANTS = (
    "hotshard.edge.router.*ǁcancel_all__mutmut*",
    "hotshard.edge.router.*ǁ_cancel_flights__mutmut*",
    "hotshard.edge.router.*ǁ_unwaited__mutmut*",
    "hotshard.edge.router.*ǁ_flight__mutmut*",
    "hotshard.edge.router.*ǁ_send__mutmut*",
    "hotshard.edge.router.xǁDeliveryPumpǁwait__mutmut*",
    "hotshard.edge.router.x__failure_of__mutmut*",
)
"""cancel_all through the batched path (b5d3cbc) and what it added or changed beside _fly."""

OWN_CHECK_ROUTER_MUTANTS = (
    "hotshard.edge.router.*ǁsubmit__mutmut*",
    # the user and limits checks moved from submit to _prepare (50bd853)
    "hotshard.edge.router.*ǁ_prepare__mutmut*",
    "hotshard.edge.router.x__client_ts__mutmut*",
    "hotshard.edge.router.x__page_size__mutmut*",
    "hotshard.edge.router.x__cursor__mutmut*",
)
"""The router's own checks before anything reaches Redis or Kafka."""

DEFAULT_ROUTER_MUTANTS = (
    *OWN_CHECK_ROUTER_MUTANTS,
    *BATCH_ROUTER_MUTANTS,
    *CANCEL_ALL_ROUTER_MUTANTS,
)


TIMEOUT_MULTIPLIER = 5.0


def run_dir(module: str) -> Path:
    return BUILD / module.removesuffix(".py").replace("/", ".")


def tracked() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.split("\0")
    files = [REPO / name for name in names if name]
    files += sorted((REPO / "hotshard" / "v1").glob("*_pb2*.py*"))  # generated (make proto)
    return [path for path in files if path.is_file()]


def mutmut_section(module: str) -> str:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    section = {
        "source_paths": [module],
        "also_copy": config.get("also_copy", []),
        "pytest_add_cli_args_test_selection": list(MODULES[module]),
        "pytest_add_cli_args": config.get("pytest_add_cli_args", []),
        # mutmut's CPU-time limit per mutant is (estimate + 1 s) x this x 2: its default 15
        # let each mutant that loops forever spin for minutes of a shared core
        "timeout_multiplier": config.get("timeout_multiplier", TIMEOUT_MULTIPLIER),
    }
    lines = ["[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in section.items()]
    return "\n".join(lines) + "\n"


def without_mutmut(pyproject: str) -> str:
    """pyproject.toml's text without its [tool.mutmut] table."""
    out: list[str] = []
    skipping = False
    for line in pyproject.splitlines(keepends=True):
        if line.startswith("["):
            skipping = line.strip() == "[tool.mutmut]"
        if not skipping:
            out.append(line)
    return "".join(out)


def prepare(module: str, fresh: bool) -> Path:
    where = run_dir(module)
    if fresh and where.exists():
        shutil.rmtree(where)
    for path in tracked():
        target = where / path.relative_to(REPO)
        if target.exists() and target.stat().st_mtime_ns == path.stat().st_mtime_ns:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    pyproject = without_mutmut((REPO / "pyproject.toml").read_text())
    text = pyproject.rstrip("\n") + "\n\n" + mutmut_section(module)
    target = where / "pyproject.toml"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    return where


def mutmut(where: Path, *args: str, timeout_s: int | None = None, nice: int = 0) -> int:
    command = [str(REPO / ".venv" / "bin" / "mutmut"), *args]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    if timeout_s:
        command = ["timeout", str(timeout_s), *command]
    env = {**os.environ, "HOTSHARD_BOOK": "python"}
    return subprocess.run(command, cwd=where, env=env, check=False).returncode


def summary(module: str) -> Counter[str]:
    """Counts per status of a module's last results (mutmut's `results --all`)."""
    where = run_dir(module)
    if not (where / "mutants").exists():
        return Counter()
    out = subprocess.run(
        [str(REPO / ".venv" / "bin" / "mutmut"), "results", "--all", "true"],
        cwd=where,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return Counter(line.rsplit(": ", 1)[1].strip() for line in out.splitlines() if ": " in line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", nargs="?", choices=sorted(MODULES))
    parser.add_argument("--all", action="store_true", help="every module, one at a time")
    parser.add_argument("--mutants", nargs="*", default=[], help="mutmut names or globs")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results")
    parser.add_argument("--summary", action="store_true", help="counts only, no run")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=7200, help="seconds per module")
    parser.add_argument("--nice", type=int, default=10)
    args = parser.parse_args(argv)
    modules = sorted(MODULES) if args.all or args.module is None else [args.module]
    if args.summary:
        for module in modules:
            print(module, dict(summary(module)))
        return 0
    if args.module is None and not args.all:
        parser.error("name a module, or --all")
    status = 0
    for module in modules:
        names = list(args.mutants)
        if not names and module == "hotshard/edge/router.py":
            names = list(DEFAULT_ROUTER_MUTANTS)
        where = prepare(module, args.fresh)
        print(f"== {module} in {where.relative_to(REPO)}", flush=True)
        run = ["run", "--max-children", str(args.max_children), *names]
        status = mutmut(where, *run, timeout_s=args.timeout, nice=args.nice) or status
        mutmut(where, "results")
        print(module, dict(summary(module)), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
