"""The book is a pure function of its input: it imports nothing that reads the world."""

import ast
from pathlib import Path

import engine.book

FORBIDDEN = {"time", "random", "uuid", "datetime", "os", "socket", "secrets", "threading"}


def test_book_imports_no_clock_randomness_or_io():
    for path in Path(engine.book.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
