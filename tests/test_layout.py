"""Folders name their audience and nothing imports upward (docs/ARCHITECTURE.md): every
import in the source tree (lazy ones inside functions too) read from the AST. The book's
freedom from clocks and I/O is tests/engine/book/test_purity.py."""

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("engine", "hotshard", "lambdas", "statemachine", "infra", "bench")
PURE = ("names", "reasons", "domain", "commands", "events", "codec", "wire")
"""hotshard's pure modules: no I/O, shared by everything (the book included)."""


def modules() -> Iterator[tuple[str, Path]]:
    """(dotted module name, path) of every Python file of the source tree."""
    for top in SOURCES:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO)
            if rel.parts[:2] == ("hotshard", "v1"):
                continue  # generated
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            assert node.module is not None
            names.add(node.module)
            # `from hotshard import route` imports hotshard.route
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def stdlib(name: str) -> bool:
    return name.split(".", maxsplit=1)[0] in sys.stdlib_module_names


def allowed(module: str, name: str) -> str | None:
    """Why `module` may not import `name` (None: it may)."""
    top = module.split(".", maxsplit=1)[0]
    if within(name, "lambdas", "statemachine") and not within(
        module, "hotshard.local", top if top in ("lambdas", "statemachine") else "-"
    ):
        return "only hotshard.local imports lambdas/ and statemachine/"
    if within(module, "engine.book"):
        pure = [f"hotshard.{m}" for m in PURE] + ["hotshard.v1", "engine.book", "google.protobuf"]
        # mypy_extensions: i64 and mypyc_attr, plain int and a no-op decorator when not
        # compiled (the compiled build, engine/native.py); librt: mypyc's runtime library
        # (vec, StringWriter: engine/book/ended.py), pure Python where not compiled
        pure += ["mypy_extensions", "librt"]
        if not (stdlib(name) or within(name, *pure) or name == "hotshard"):
            return (
                "engine/book imports only the stdlib, hotshard's pure modules, mypy_extensions"
                " and librt"
            )
    if within(module, *(f"hotshard.{m}" for m in PURE)):
        pure = [f"hotshard.{m}" for m in PURE] + ["hotshard.v1", "google.protobuf"]
        if not (stdlib(name) or within(name, *pure) or name == "hotshard"):
            return "a pure hotshard module imports only the stdlib and pure modules"
    if within(module, "engine") and within(
        name, "hotshard.local", "hotshard.client", "hotshard.edge", "hotshard.cli"
    ):
        return "engine never imports hotshard.local, .client, .edge or .cli"
    if within(module, "hotshard") and not within(module, "hotshard.local", "hotshard.cli"):
        if within(name, "engine", "hotshard.local", "hotshard.cli"):
            return "only hotshard.local and hotshard.cli import engine and hotshard.local"
        if within(name, "hotshard.client") and not within(module, "hotshard.client"):
            return "only hotshard.local and hotshard.cli use the client library"
    if within(module, "lambdas", "infra") and within(
        name, "hotshard.local", "hotshard.client", "hotshard.cli"
    ):
        return "what is deployed never imports the local tools or the client"
    return None


def test_every_import_follows_the_layout() -> None:
    broken = []
    for module, path in modules():
        for name in sorted(imports(path)):
            why = allowed(module, name)
            if why is not None:
                broken.append(f"{path.relative_to(REPO)} imports {name}: {why}")
    assert broken == [], "\n".join(broken)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("hotshard.edge.api", "hotshard.local.gateway"),
        ("hotshard.edge.push", "hotshard.client.session"),
        ("hotshard.route", "engine.book"),
        ("hotshard.wire", "hotshard.clients"),
        ("hotshard.registry", "hotshard.cli"),
        ("engine.service.loop", "hotshard.edge.router"),
        ("engine.replay", "hotshard.local.flow"),
        ("engine.book.book", "hotshard.route"),
        ("lambdas.order_router.handler", "hotshard.local.edge"),
        ("engine.service.control", "lambdas.stream_handler.handler"),
        ("infra.api", "lambdas.order_router"),
    ],
)
def test_the_rules_refuse_an_upward_import(module: str, name: str) -> None:
    assert allowed(module, name) is not None


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("hotshard.local.edge", "lambdas.order_router.handler"),
        ("hotshard.local.demo.matching", "engine.book"),
        ("hotshard.cli", "engine.replay"),
        ("hotshard.client.session", "hotshard.client.frames"),
        ("hotshard.local.demo.cluster", "hotshard.client.session"),
        ("hotshard.edge.router", "hotshard.route"),
        ("engine.service.core", "hotshard.wire"),
        ("engine.book.snapshot", "hotshard.v1.snapshot_pb2"),
    ],
)
def test_the_rules_let_a_downward_import_through(module: str, name: str) -> None:
    assert allowed(module, name) is None
