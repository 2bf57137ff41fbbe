from typing import Any

from aws_cdk.assertions import Template


def _ingress(template: Template) -> list[dict[str, Any]]:
    rules = template.find_resources("AWS::EC2::SecurityGroupIngress")
    return [r["Properties"] for r in rules.values()]


def test_vpc_has_private_subnets_in_each_configured_az(templates: dict[str, Template]) -> None:
    network = templates["HotshardNetwork"]
    private = network.find_resources(
        "AWS::EC2::Subnet", {"Properties": {"MapPublicIpOnLaunch": False}}
    )
    zones = {s["Properties"]["AvailabilityZone"] for s in private.values()}
    assert zones == {"ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c"}


def test_endpoints_for_s3_cloudwatch_logs_and_sts(templates: dict[str, Template]) -> None:
    network = templates["HotshardNetwork"]
    endpoints = network.find_resources("AWS::EC2::VPCEndpoint")
    services = sorted(json_name(e["Properties"]["ServiceName"]) for e in endpoints.values())
    assert services == ["logs", "monitoring", "s3", "sts"]


def json_name(service: Any) -> str:
    text = service if isinstance(service, str) else str(service)
    for name in ("logs", "monitoring", "s3", "sts"):
        if f".{name}'" in text or text.endswith(f".{name}") or f'.{name}"' in text:
            return name
    raise AssertionError(f"unexpected endpoint service {service}")


def test_msk_and_redis_admit_only_their_ports(templates: dict[str, Template]) -> None:
    network = templates["HotshardNetwork"]
    rules = _ingress(network)
    msk = [r for r in rules if r["FromPort"] == 9098]
    redis = [r for r in rules if r["FromPort"] == 6379]
    grpc = [r for r in rules if r["FromPort"] == 50051]
    assert len(msk) == 5 and all(r["ToPort"] == 9098 for r in msk)
    assert len(redis) == 4 and all(r["ToPort"] == 6379 for r in redis)
    assert len(grpc) == 1 and grpc[0]["ToPort"] == 50056
    assert {r["FromPort"] for r in rules} == {9098, 6379, 50051}
    assert all("SourceSecurityGroupId" in r for r in rules)


def test_nothing_is_open_to_the_internet(templates: dict[str, Template]) -> None:
    for template in templates.values():
        for group in template.find_resources("AWS::EC2::SecurityGroup").values():
            for rule in group["Properties"].get("SecurityGroupIngress", []):
                assert rule.get("CidrIp") != "0.0.0.0/0", rule
                assert rule.get("CidrIpv6") != "::/0", rule


def test_flow_logs_record_rejected_traffic(templates: dict[str, Template]) -> None:
    templates["HotshardNetwork"].has_resource_properties(
        "AWS::EC2::FlowLog", {"TrafficType": "REJECT"}
    )
