"""Cache: ElastiCache Redis (L1), the routing table, registry and connections.

A replication group with one primary and `redisReplicas` replicas across AZs, automatic
failover and Multi-AZ, encryption at rest and in transit (clients connect with TLS).
"""

from __future__ import annotations

from aws_cdk import Environment, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from constructs import Construct

from hotshard import names
from infra.config import InfraConfig
from infra.constructs.nag import acknowledge
from infra.network import REDIS_PORT, NetworkStack


class CacheStack(Stack):
    """Redis replication group reachable only from the hotshard security groups."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        env: Environment,
        network: NetworkStack,
    ) -> None:
        super().__init__(scope, construct_id, env=env, description="hotshard Redis (ElastiCache)")
        subnets = elasticache.CfnSubnetGroup(
            self,
            "Subnets",
            description="hotshard Redis: private subnets",
            subnet_ids=network.vpc.select_subnets(
                subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS
            ).subnet_ids,
        )
        self.redis = elasticache.CfnReplicationGroup(
            self,
            "Redis",
            replication_group_description="hotshard routing table, registry, connections, depth",
            engine="redis",
            engine_version="7.1",
            cache_node_type=config.redis_node_type,
            num_node_groups=1,
            replicas_per_node_group=config.redis_replicas,
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            at_rest_encryption_enabled=True,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            port=REDIS_PORT,
            cache_subnet_group_name=subnets.ref,
            security_group_ids=[network.redis_sg.security_group_id],
            snapshot_retention_limit=1,
        )
        self.host = self.redis.attr_primary_end_point_address
        self.port = self.redis.attr_primary_end_point_port
        # What a Redis client needs: in-transit encryption is required, so TLS is on.
        self.client_environment: dict[str, str] = {
            names.ENV_REDIS_HOST: self.host,
            names.ENV_REDIS_PORT: self.port,
            names.ENV_REDIS_TLS: "true",
        }
        acknowledge(
            self.redis,
            "AwsSolutions-AEC5",
            "the default port is kept so local runs (a real Redis) and AWS share one setting; "
            "the security group admits only hotshard's own groups",
        )
        acknowledge(
            self.redis,
            "AwsSolutions-AEC6",
            "no Redis AUTH yet: the engine and the Lambdas connect with REDIS_HOST, REDIS_PORT "
            "and REDIS_TLS only; access is limited by security group and TLS. An AUTH token "
            "from Secrets Manager needs client support first (follow-up)",
        )
