"""Across every stack: no `*` action, and `*` resources only where AWS offers nothing narrower."""

from aws_cdk.assertions import Template

from tests.infra.iam import as_list, statements

# Actions that support no resource-level permission (so "Resource": "*" is the only form).
UNSCOPABLE = {
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
    "ec2:DescribeInstances",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "cloudwatch:PutMetricData",
    "cloudwatch:GetMetricData",
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeWarmPool",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def test_no_action_is_a_wildcard(templates: dict[str, Template]) -> None:
    for name, template in templates.items():
        for statement in statements(template):
            for action in as_list(statement["Action"]):
                assert "*" not in action, f"{name}: {action}"


def test_star_resources_only_for_unscopable_actions(templates: dict[str, Template]) -> None:
    for name, template in templates.items():
        for statement in statements(template):
            if "*" in as_list(statement.get("Resource", [])):
                extra = set(as_list(statement["Action"])) - UNSCOPABLE
                assert not extra, f"{name}: {extra} granted on '*'"
