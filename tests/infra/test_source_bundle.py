from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Annotations, Match

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
