"""Code assets made by copying repository paths: no Docker, no pip, nothing invented.

A Lambda bundle is the shared `hotshard` package plus the handler's own directory, laid out
as in the repository so imports work unchanged (`lambdas.order_router.handler.handler`);
what exists only to run on one machine or for users (`hotshard/local`, `hotshard/client`,
`hotshard/cli.py`) is left out (`exclude`).
An entry point that does not exist yet (it belongs to a later issue) is not faked: the
asset is built from what exists and the construct reports the missing path as a warning,
or as an error when `hotshard:requireCode` is true (use that for `cdk deploy`).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import jsii
from aws_cdk import Annotations, BundlingOptions, DockerImage, ILocalBundling
from constructs import Construct

_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".mypy_cache")
# Never pulled: local bundling always succeeds, so CDK never falls back to Docker.
_NO_DOCKER = DockerImage.from_registry("hotshard/local-bundling-only")


@jsii.implements(ILocalBundling)
class CopyPaths:
    """Local bundling that copies the given paths (relative to `root`) into the asset,
    leaving out the `exclude` paths (relative to `root` too) inside them."""

    def __init__(self, root: Path, paths: Sequence[str], exclude: Sequence[str] = ()) -> None:
        self._root = root
        self._paths = tuple(paths)
        self._exclude = frozenset(Path(rel) for rel in exclude)

    def _ignore(self, directory: str, entries: list[str]) -> set[str]:
        here = Path(directory).relative_to(self._root)
        left_out = {e for e in entries if here / e in self._exclude}
        return left_out | set(_IGNORED(directory, entries))

    def try_bundle(self, output_dir: str, *_options: object, **_kwargs: object) -> bool:
        out = Path(output_dir)
        for rel in self._paths:
            src = self._root / rel
            dst = out / rel
            if Path(rel) in self._exclude:
                continue
            if src.is_dir():
                shutil.copytree(src, dst, ignore=self._ignore, dirs_exist_ok=True)
            elif src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        return True


def bundling(root: Path, paths: Sequence[str], exclude: Sequence[str] = ()) -> BundlingOptions:
    """BundlingOptions that copy `paths` from `root` locally, without `exclude` (the asset
    hash is the output)."""
    # CDK fingerprints a bundled asset by its source directory and these options as JSON,
    # where the local bundler is opaque: `command` (never run) names the copy, so two
    # assets of one source root that copy different paths get different hashes.
    command = ["copy", *paths, *(f"--exclude={rel}" for rel in exclude)]
    return BundlingOptions(image=_NO_DOCKER, local=CopyPaths(root, paths, exclude), command=command)


def report_missing(
    scope: Construct, root: Path, required: Sequence[str], *, require: bool, why: str
) -> list[str]:
    """Warn (or fail when `require`) for each required path under `root` that is absent."""
    missing = [rel for rel in required if not (root / rel).exists()]
    for rel in missing:
        message = f"{rel} does not exist under {root} ({why}); the asset is built without it"
        if require:
            Annotations.of(scope).add_error(message)
        else:
            Annotations.of(scope).add_warning_v2("hotshard:missing-code", message)
    return missing
