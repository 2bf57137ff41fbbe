"""Network: the VPC, its endpoints, and one security group per kind of caller.

Only what flows between the parts is allowed in: the Lambdas (router, stream handler, migration
tasks, topic bootstrap) and the engines reach MSK on 9098 (IAM auth over TLS) and Redis on
6379 (TLS); migration tasks reach the engines' gRPC ports, and their group allows outbound
only those three and HTTPS (AWS APIs). Nothing is reachable from the internet: clients come
in only through API Gateway, which is not in the VPC.
"""

from __future__ import annotations

from aws_cdk import Environment, Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.config import InfraConfig
from infra.constructs.nag import acknowledge
from infra.constructs.python_function import log_group

MSK_IAM_PORT = 9098
REDIS_PORT = 6379


class NetworkStack(Stack):
    """VPC with private subnets, S3/CloudWatch/STS endpoints and the security groups."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: InfraConfig, env: Environment
    ) -> None:
        super().__init__(scope, construct_id, env=env, description="hotshard network")
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
            availability_zones=list(config.availability_zones),
            nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20
                ),
            ],
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                log_group(self, "FlowLogs", days=config.log_retention_days)
            ),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        private = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[private]
        )
        for name, service in (
            ("CloudWatch", ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING),
            ("Logs", ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS),
            ("Sts", ec2.InterfaceVpcEndpointAwsService.STS),
        ):
            endpoint = self.vpc.add_interface_endpoint(
                name, service=service, subnets=private, private_dns_enabled=True
            )
            acknowledge(
                endpoint,
                "AwsSolutions-EC23",
                "CDK opens the endpoint's HTTPS port to the VPC CIDR only; cdk-nag cannot "
                "resolve the CIDR token and reports an error instead of a pass",
            )

        def group(name: str, description: str, *, outbound: bool = True) -> ec2.SecurityGroup:
            return ec2.SecurityGroup(
                self, name, vpc=self.vpc, description=description, allow_all_outbound=outbound
            )

        self.engine_sg = group("EngineSg", "hotshard engine instances")
        self.router_sg = group("RouterSg", "order_router Lambda")
        self.stream_sg = group("StreamSg", "stream_handler Lambda")
        self.tasks_sg = group("TasksSg", "migration task Lambdas", outbound=False)
        self.admin_sg = group("AdminSg", "Kafka topic bootstrap custom resource")
        self.msk_sg = group("MskSg", "MSK brokers: IAM auth over TLS only", outbound=False)
        self.redis_sg = group("RedisSg", "ElastiCache Redis: TLS only", outbound=False)

        kafka = ec2.Port.tcp(MSK_IAM_PORT)
        for client, why in (
            (self.engine_sg, "engines consume orders and publish events"),
            (self.router_sg, "router produces orders"),
            (self.stream_sg, "stream handler consumes events"),
            (self.tasks_sg, "migration reads and replays pending orders"),
            (self.admin_sg, "topic bootstrap creates topics"),
        ):
            self.msk_sg.add_ingress_rule(client, kafka, f"Kafka IAM/TLS: {why}")
        redis = ec2.Port.tcp(REDIS_PORT)
        for client, why in (
            (self.engine_sg, "engine registry, small snapshots"),
            (self.router_sg, "route lookup"),
            (self.stream_sg, "connections and latest depth"),
            (self.tasks_sg, "routing table changes during migration"),
        ):
            self.redis_sg.add_ingress_rule(client, redis, f"Redis TLS: {why}")
        grpc = ec2.Port.tcp_range(config.grpc_ports.start, config.grpc_ports.stop - 1)
        self.engine_sg.add_ingress_rule(
            self.tasks_sg, grpc, "gRPC control: migration tasks call Snapshot/Restore/Remove"
        )
        # The tasks may go where they have business and nowhere else in the VPC.
        for peer, port, why in (
            (self.msk_sg, kafka, "Kafka IAM/TLS: pending orders"),
            (self.redis_sg, redis, "Redis TLS: routing table and registry"),
            (self.engine_sg, grpc, "gRPC control of the engines"),
            (
                ec2.Peer.any_ipv4(),
                ec2.Port.tcp(443),
                "HTTPS to AWS APIs (Auto Scaling, EC2, CloudWatch, S3, STS) through the VPC "
                "endpoints and the NAT gateway",
            ),
        ):
            self.tasks_sg.add_egress_rule(peer, port, why)
