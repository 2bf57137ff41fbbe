"""Reading py-spy's collapsed output (`--format raw`): one line per stack, frames joined by
';' from the thread's root to the leaf, then a space and the sample count."""

from collections.abc import Iterator
from pathlib import Path


def collapsed_stacks(path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(the stack as written, its frames root first, its sample count) per well-formed line."""
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        yield stack, stack.split(";"), int(count)
