"""Build the book's compiled build in place: engine/book compiled by mypyc.

    python -m engine.build [--check]

Needs a C compiler and Python's headers (`make native` installs what is missing). The
extension files land next to their source (engine/book/book.cpython-311-*.so and the
shared engine/book/_native__mypyc*.so); the C sources and objects go to build/native.
engine.native says how an import chooses between the builds.
"""

import argparse
import os
from pathlib import Path

from engine.native import COMPILED, GROUP, ROOT, compiled_files, stale_reason


def build(verbose: bool = False) -> None:
    from mypyc.build import mypycify  # noqa: PLC0415 - only the build needs mypyc
    from setuptools import setup  # noqa: PLC0415

    os.chdir(ROOT)
    paths = [str(Path(*name.split(".")).with_suffix(".py")) for name in COMPILED]
    setup(
        name="hotshard-book-native",
        ext_modules=mypycify(
            # a note about config sections for other modules would count as an error
            ["--no-warn-unused-configs", *paths],
            opt_level="3",
            group_name=GROUP,
            target_dir="build/native",
            verbose=verbose,
        ),
        script_args=[
            *([] if verbose else ["-q"]),
            "build_ext",
            "--inplace",
            "--build-temp",
            "build/native",
        ],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m engine.build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check", action="store_true", help="only print the build an import picks now"
    )
    parser.add_argument("--verbose", action="store_true", help="show the compiler's commands")
    args = parser.parse_args(argv)
    if not args.check:
        build(args.verbose)
        # setuptools keeps an extension whose C source did not change: mark it as made
        # from the current sources, or it would count as stale
        for path in compiled_files():
            path.touch()
    why = stale_reason()
    print(f"compiled book: {'cannot be used, ' + why if why else 'up to date'}")
    if why and not args.check:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
