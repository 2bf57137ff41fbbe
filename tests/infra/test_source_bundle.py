import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Annotations, Match, Template

from infra.app import Deployment
from infra.constructs.python_function import NOT_IN_LAMBDAS
from infra.constructs.source_bundle import CopyPaths, report_missing


def test_copy_keeps_repository_layout_and_skips_bytecode(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "hotshard" / "__pycache__").mkdir(parents=True)
    (src / "hotshard" / "names.py").write_text("X = 1\n")
    (src / "hotshard" / "__pycache__" / "names.cpython-311.pyc").write_bytes(b"")
    (src / "lambdas" / "order_router").mkdir(parents=True)
    (src / "lambdas" / "order_router" / "handler.py").write_text("")
    assert CopyPaths(src, ["hotshard", "lambdas/order_router", "absent"]).try_bundle(str(out))
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["hotshard/names.py", "lambdas/order_router/handler.py"]


def test_excluded_paths_are_left_out_wherever_they_sit(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    for rel in ("hotshard/names.py", "hotshard/local/gateway.py", "hotshard/cli.py", "x.py"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("")
    exclude = ["hotshard/local", "hotshard/cli.py", "x.py"]
    assert CopyPaths(src, ["hotshard", "x.py"], exclude).try_bundle(str(out))
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["hotshard/names.py"]


def test_each_lambda_ships_its_handler_and_the_package_without_local_client_or_cli(
    deployment: Deployment, templates: dict[str, Template]
) -> None:
    """Every project Lambda of the synthesized app (built from a copy of the whole hotshard
    package, local/ and client/ included) gets its own asset: its handler, the shared
    package, nothing that runs only on one machine or for users. (All bundles once hashed
    alike, so every function and the engine fleet got the first asset bundled.)"""
    out = Path(deployment.app.outdir)
    checked = 0
    for template in templates.values():
        functions = template.find_resources("AWS::Lambda::Function")
        for name, function in functions.items():
            props = function["Properties"]
            module, _, _ = props["Handler"].rpartition(".")
            asset = out / f"asset.{props['Code']['S3Key'].removesuffix('.zip')}"
            if not (asset / "hotshard").is_dir():
                continue  # a handler aws-cdk-lib ships itself (index.js)
            assert (asset / f"{module.replace('.', '/')}.py").is_file(), name
            assert (asset / "hotshard" / "names.py").is_file(), name
            for rel in NOT_IN_LAMBDAS:
                assert not (asset / rel).exists(), (name, rel)
            checked += 1
    assert checked >= 12  # order_router, stream_handler, the topics handler, 9 task handlers


def test_the_engine_fleet_gets_the_engines_code(deployment: Deployment) -> None:
    manifest = json.loads((Path(deployment.app.outdir) / "HotshardFleet.assets.json").read_text())
    paths = [f["source"]["path"] for f in manifest["files"].values()]
    staged = [Path(deployment.app.outdir) / p for p in paths if p.startswith("asset.")]
    assert any((d / "engine" / "__main__.py").is_file() for d in staged), staged


@pytest.mark.parametrize("require", [False, True])
def test_missing_entry_point_is_a_warning_or_an_error(tmp_path: Path, require: bool) -> None:
    stack = cdk.Stack(cdk.App(), "S")
    missing = report_missing(
        stack, tmp_path, ["lambdas/x/handler.py"], require=require, why="later"
    )
    assert missing == ["lambdas/x/handler.py"]
    annotations = Annotations.from_stack(stack)
    finder = annotations.has_error if require else annotations.has_warning
    finder("/S", Match.string_like_regexp("lambdas/x/handler.py does not exist"))


def test_present_entry_point_says_nothing(tmp_path: Path) -> None:
    (tmp_path / "h.py").write_text("")
    stack = cdk.Stack(cdk.App(), "S")
    assert report_missing(stack, tmp_path, ["h.py"], require=True, why="x") == []
