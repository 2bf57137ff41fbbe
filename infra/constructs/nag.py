"""cdk-nag (AwsSolutions) acknowledgements, each with its written reason.

cdk-nag 3 runs as a CDK policy-validation plugin: synthesis stops on any finding that is not
acknowledged. Rules that report several findings (IAM5 wildcards) are acknowledged one
finding at a time, as `AwsSolutions-IAM5[Resource::<resource>]`, so a new wildcard is never
waved through by an old reason. `acknowledge_wildcards` renders a resource the way cdk-nag
does (its `flattenCfnReference`) so the acknowledgement names exactly that resource.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

MIN_REASON = 40  # a reason is a sentence that says why, not a shrug


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge `rule` (e.g. `AwsSolutions-S1`) on `scope` and everything under it."""
    if len(reason) < MIN_REASON:
        raise ValueError(f"acknowledging {rule} needs a real reason, got {reason!r}")
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def acknowledge_wildcards(scope: IConstruct, resources: Iterable[str], reason: str) -> None:
    """Acknowledge IAM5 for each of these wildcard resources in policies under `scope`."""
    stack = cdk.Stack.of(scope)
    for resource in resources:
        flat = flatten(stack.resolve(resource))
        acknowledge(scope, f"AwsSolutions-IAM5[Resource::{flat}]", reason)


def flatten(node: Any) -> str:
    """A resolved CloudFormation value as the flat string cdk-nag uses in finding ids."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return str(delimiter).join(flatten(i) for i in items)
        if "Fn::Sub" in node:
            return flatten(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{flatten(resource)}.{flatten(attribute)}>"
        if "Fn::ImportValue" in node:
            return flatten(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


def add_checks(app: cdk.App) -> None:
    """Run the AwsSolutions pack over the whole app at synth time."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
