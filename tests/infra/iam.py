"""Reading IAM statements out of synthesized templates."""

from collections.abc import Iterator
from typing import Any

from aws_cdk.assertions import Template


def statements(template: Template) -> Iterator[dict[str, Any]]:
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for policy in template.find_resources(kind).values():
            yield from policy["Properties"]["PolicyDocument"]["Statement"]
    for role in template.find_resources("AWS::IAM::Role").values():
        for policy in role["Properties"].get("Policies", []):
            yield from policy["PolicyDocument"]["Statement"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(template: Template, role_prefix: str) -> list[dict[str, Any]]:
    """Statements of the policies attached to roles whose logical id starts with the prefix."""
    found = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        roles = [r["Ref"] for r in policy["Properties"].get("Roles", [])]
        if any(r.startswith(role_prefix) for r in roles):
            found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return found


def actions_of(stmts: list[dict[str, Any]]) -> set[str]:
    return {a for s in stmts for a in as_list(s["Action"])}
