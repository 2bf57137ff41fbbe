"""Which build of the book an import loads: the compiled one or the pure-Python source.

The compiled build is the same source (engine/book/order.py, ended.py, index.py, packed.py,
level.py, book.py, engine/fastwire.py and engine/service/batch.py) compiled by mypyc
(`python -m engine.build`, run by `make native` and `make setup`): extension files next to
their source (`book.py` and `book.cpython-311-*.so`).
`HOTSHARD_BOOK` chooses:

- unset or `auto`: compiled if built and newer than every file it is made from, else pure
  Python (a stale build is never loaded: an edit without `make native` runs the source);
- `python`: always the pure-Python source (the fallback; `make test` runs under both);
- `native`: compiled, or an ImportError (a process that must not run slow by accident).

The choice is made once, when `engine` is first imported (engine/__init__.py calls
`choose_build`), before any book module loads; `engine.book.BUILD` tells which it was.
"""

import importlib.machinery
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

ENV = "HOTSHARD_BOOK"
COMPILED = (
    "engine.book.order",
    "engine.book.ended",
    "engine.book.index",
    "engine.book.packed",
    "engine.book.level",
    "engine.book.book",
    "engine.fastwire",
    "engine.service.batch",
)
"""The modules mypyc compiles: the book, the engine's hand-written event records
(engine/fastwire.py) and its per-batch loops (engine/service/batch.py). The rest of
engine.book stays Python: snapshot.py wraps protobuf, instrument.py is a frozen dataclass
read once per book, market.py a dict of books."""
GROUP = "engine.book._native"
"""Name of the shared library the compiled modules live in (engine/book/_native__mypyc*.so)."""
ROOT = Path(__file__).resolve().parent.parent


SOURCES = (
    *(Path(*name.split(".")).with_suffix(".py") for name in COMPILED),
    Path("engine/book/instrument.py"),
    Path("hotshard/commands.py"),
    Path("hotshard/events.py"),
    Path("hotshard/domain.py"),
    Path("hotshard/reasons.py"),
    Path("hotshard/names.py"),
)
"""What the compiled build is made from: it is stale once any of these is newer."""


class _OneLoader(MetaPathFinder):
    """Finds the compiled modules with one kind of loader only: source or extension."""

    def __init__(self, native: bool) -> None:
        if native:
            self.loader: tuple[type, list[str]] = (
                importlib.machinery.ExtensionFileLoader,
                importlib.machinery.EXTENSION_SUFFIXES,
            )
        else:
            self.loader = (
                importlib.machinery.SourceFileLoader,
                importlib.machinery.SOURCE_SUFFIXES,
            )

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in COMPILED or not path:
            return None
        return importlib.machinery.FileFinder(path[0], self.loader).find_spec(fullname, target)


def compiled_files() -> list[Path]:
    """The extension files of the compiled build that exist (shared library first)."""
    found = []
    for name in (GROUP + "__mypyc", *COMPILED):
        stem = ROOT.joinpath(*name.split("."))
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            if stem.with_name(stem.name + suffix).exists():
                found.append(stem.with_name(stem.name + suffix))
                break
    return found


def stale_reason() -> str:
    """Why the compiled build cannot be used ("" if it can)."""
    built = compiled_files()
    if len(built) != len(COMPILED) + 1:
        return "it is not built"
    oldest = min(path.stat().st_mtime for path in built)
    newer = [str(p) for p in SOURCES if (ROOT / p).stat().st_mtime > oldest]
    return f"it is older than {', '.join(newer)}" if newer else ""


def choose_build(env: Mapping[str, str] = os.environ) -> str:
    """Decide the build from `HOTSHARD_BOOK` and make imports load it; returns it."""
    choice = env.get(ENV, "auto")
    if choice not in ("auto", "python", "native"):
        raise ImportError(f"{ENV} must be auto, python or native, got {choice!r}")
    why = "" if choice == "python" else stale_reason()
    if choice == "native" and why:
        raise ImportError(f"{ENV}=native but the compiled book cannot be used: {why} (make native)")
    if choice == "auto" and why and compiled_files():
        print(f"engine.book: pure Python, the compiled build is stale: {why}", file=sys.stderr)
    native = choice != "python" and not why
    if not any(isinstance(f, _OneLoader) for f in sys.meta_path):
        sys.meta_path.insert(0, _OneLoader(native))
    return "native" if native else "python"
