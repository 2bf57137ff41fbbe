"""The migration state machine: the ASL (migration.asl.json) and its task Lambdas (tasks/).

`definition(arns)` is the ASL with its `${<Task>FunctionArn}` placeholders substituted, as
Step Functions gets it (infra/migration.py passes the same substitutions to CloudFormation;
the local control plane, hotshard.local.control, substitutes them itself)."""

import json
import re
from pathlib import Path
from typing import Any

ASL_PATH = Path(__file__).resolve().parent / "migration.asl.json"
_FUNCTION = re.compile(r"^\$\{(\w+)FunctionArn\}$")


def load() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ASL_PATH.read_text())
    return loaded


def task_names(asl: dict[str, Any] | None = None) -> list[str]:
    """The task functions the definition calls (`WaitForDrain`, ...), in its order."""
    out: list[str] = []
    for state in (asl or load())["States"].values():
        match = _FUNCTION.match(str(state.get("Resource", "")))
        if state.get("Type") == "Task" and match and match.group(1) not in out:
            out.append(match.group(1))
    return out


def module_of(task: str) -> str:
    """`WaitForDrain` -> `wait_for_drain` (statemachine/tasks/<module>.py)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", task).lower()


def definition(arns: dict[str, str]) -> str:
    """The ASL text with `${<Task>FunctionArn}` replaced by arns[<Task>]."""
    text = ASL_PATH.read_text()
    for task, arn in arns.items():
        text = text.replace("${" + task + "FunctionArn}", arn)
    left = re.findall(r"\$\{(\w+)\}", text)
    if left:
        raise ValueError(f"unsubstituted placeholders in {ASL_PATH.name}: {sorted(set(left))}")
    return text
