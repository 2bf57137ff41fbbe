"""One synthesized deployment shared by every infra test (synth takes ~10 s).

The app is built against a temporary source root that holds the real `hotshard` package
plus one-line entry points for the handlers that later issues will write, so the wiring
is tested with `hotshard:requireCode=true` (a missing entry point fails synth) without
putting placeholder handlers into the repository.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk.assertions import Template

from infra.app import Deployment, build, cdk_json_context
from infra.migration import ASL_PATH, task_functions

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
ENTRY = "def handler(event, context):\n    return None\n"
# The task Lambdas the repository's ASL asks for (whatever its Task states are today).
TASKS = task_functions(json.loads(ASL_PATH.read_text()))


def make_source_root(root: Path) -> Path:
    """A source tree with the real shared package and minimal entry points."""
    shutil.copytree(
        REPO / "hotshard", root / "hotshard", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO / "infra" / "custom_resources", root / "infra" / "custom_resources")
    shutil.copy(REPO / "infra" / "engine_host.py", root / "infra" / "engine_host.py")
    for rel in (
        "lambdas/order_router/handler.py",
        "lambdas/stream_handler/handler.py",
        "engine/__main__.py",
        *(f"statemachine/tasks/{fn.module}.py" for fn in TASKS.values()),
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(ENTRY)
    shutil.copy(ASL_PATH, root / "statemachine" / ASL_PATH.name)
    for rel in ("pyproject.toml", "constraints.txt"):
        shutil.copy(REPO / rel, root / rel)
    (root / "build" / "lambda-deps" / "python").mkdir(parents=True)
    return root


def context(source_root: Path, **overrides: Any) -> dict[str, Any]:
    ctx = cdk_json_context()
    ctx.update(
        {
            "hotshard:account": ACCOUNT,
            "hotshard:sourceRoot": str(source_root),
            "hotshard:requireCode": True,
        }
    )
    ctx.update({f"hotshard:{k}": v for k, v in overrides.items()})
    return ctx


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = make_source_root(tmp_path_factory.mktemp("src"))
    built = build(context(root), outdir=str(tmp_path_factory.mktemp("cdk.out")))
    built.app.synth()  # runs cdk-nag: raises on any unacknowledged finding
    yield built


@pytest.fixture(scope="session")
def templates(deployment: Deployment) -> dict[str, Template]:
    return {stack.stack_name: Template.from_stack(stack) for stack in deployment.stacks}
