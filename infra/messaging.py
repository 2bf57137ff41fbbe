"""Messaging: the MSK cluster (IAM auth on 9098, TLS everywhere) and its topics.

MSK is an L1 construct (CfnCluster) in stable aws-cdk-lib. Durability matches what the code
assumes (acks=all producers): an MSK configuration sets min.insync.replicas (2) and turns
unclean leader election off, every topic has replication factor `topicReplication` (3), and
`orders` / `pending-orders` keep their records long enough to replay from the oldest
checkpoint an engine may resume from (InfraConfig.orders_retention_ms).

CloudFormation does not return bootstrap brokers, so a small AWS SDK custom resource reads
them (GetBootstrapBrokers). Topics are a custom resource behind the CDK custom-resources
Provider framework, whose on-event handler is code in this repository
(`infra/custom_resources/kafka_topics/handler.py`): it runs in the VPC with the IAM identity
it is granted here, creates missing topics, adds partitions and sets topic configs. Other
stacks get Kafka access through `grant_kafka`, which names topic, group and
transactional-id ARNs instead of `*`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import CustomResource, Duration, Environment, Fn, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_msk as msk
from aws_cdk import custom_resources as cr
from constructs import Construct

from hotshard import names
from hotshard.kafka import AUTH_MSK_IAM
from infra.config import InfraConfig
from infra.constructs.nag import acknowledge, acknowledge_wildcards
from infra.constructs.python_function import HotshardFunction, deps_layer, log_group
from infra.network import NetworkStack

CLUSTER_NAME = "hotshard"
TOPICS_HANDLER_DIR = "infra/custom_resources/kafka_topics"
# Topics whose records a restart or a migration replays (retention from InfraConfig).
REPLAYED_TOPICS = (names.TOPIC_ORDERS, names.TOPIC_PENDING_ORDERS)


def server_properties(config: InfraConfig) -> str:
    """The cluster configuration (server.properties) every broker runs with."""
    settings = {
        "min.insync.replicas": config.msk_min_insync_replicas,
        "unclean.leader.election.enable": "false",
        "default.replication.factor": config.topic_replication,
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def topic_specs(config: InfraConfig) -> list[dict[str, Any]]:
    """The Topics property of Custom::KafkaTopics (parsed by the handler's parse_topics)."""
    retention = {"retention.ms": str(config.orders_retention_ms)}
    return [
        {
            "Name": topic,
            # Every topic is partitioned like `orders` (regular + spare partitions): a symbol
            # keeps one partition number from input to events.
            "Partitions": str(config.topic_partitions),
            "ReplicationFactor": str(config.topic_replication),
            "Config": retention if topic in REPLAYED_TOPICS else {},
        }
        for topic in names.TOPICS
    ]


class MessagingStack(Stack):
    """MSK provisioned cluster, its bootstrap brokers and the hotshard topics."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        env: Environment,
        network: NetworkStack,
    ) -> None:
        super().__init__(scope, construct_id, env=env, description="hotshard Kafka (MSK)")
        private = network.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        broker_logs = log_group(self, "BrokerLogs", days=config.log_retention_days)
        self.configuration = msk.CfnConfiguration(
            self,
            "Durability",
            name=f"{CLUSTER_NAME}-durability",
            description="hotshard: acknowledged records on min.insync.replicas brokers",
            kafka_versions_list=[config.msk_kafka_version],
            server_properties=server_properties(config),
        )
        self.cluster = msk.CfnCluster(
            self,
            "Cluster",
            cluster_name=CLUSTER_NAME,
            kafka_version=config.msk_kafka_version,
            number_of_broker_nodes=config.msk_broker_count,
            broker_node_group_info=msk.CfnCluster.BrokerNodeGroupInfoProperty(
                client_subnets=private.subnet_ids,
                instance_type=config.msk_broker_type,
                security_groups=[network.msk_sg.security_group_id],
                storage_info=msk.CfnCluster.StorageInfoProperty(
                    ebs_storage_info=msk.CfnCluster.EBSStorageInfoProperty(
                        volume_size=config.msk_volume_gib
                    )
                ),
            ),
            client_authentication=msk.CfnCluster.ClientAuthenticationProperty(
                sasl=msk.CfnCluster.SaslProperty(iam=msk.CfnCluster.IamProperty(enabled=True)),
                unauthenticated=msk.CfnCluster.UnauthenticatedProperty(enabled=False),
            ),
            encryption_info=msk.CfnCluster.EncryptionInfoProperty(
                encryption_in_transit=msk.CfnCluster.EncryptionInTransitProperty(
                    client_broker="TLS", in_cluster=True
                )
            ),
            logging_info=msk.CfnCluster.LoggingInfoProperty(
                broker_logs=msk.CfnCluster.BrokerLogsProperty(
                    cloud_watch_logs=msk.CfnCluster.CloudWatchLogsProperty(
                        enabled=True, log_group=broker_logs.log_group_name
                    )
                )
            ),
            enhanced_monitoring="PER_TOPIC_PER_BROKER",
            configuration_info=msk.CfnCluster.ConfigurationInfoProperty(
                arn=self.configuration.attr_arn,
                revision=self.configuration.attr_latest_revision_revision,
            ),
        )
        self.cluster_arn = self.cluster.attr_arn

        brokers = cr.AwsCustomResource(
            self,
            "BootstrapBrokers",
            on_update=cr.AwsSdkCall(  # also used on create
                service="Kafka",
                action="getBootstrapBrokers",
                parameters={"ClusterArn": self.cluster_arn},
                physical_resource_id=cr.PhysicalResourceId.of(self.cluster_arn),
            ),
            policy=cr.AwsCustomResourcePolicy.from_sdk_calls(resources=[self.cluster_arn]),
            install_latest_aws_sdk=False,
        )
        self.bootstrap_brokers = brokers.get_response_field("BootstrapBrokerStringSaslIam")
        # What a Kafka client needs (hotshard.kafka.client_config): the IAM brokers on 9098
        # and auth=msk-iam (SASL_SSL, OAUTHBEARER signed with the caller's role).
        self.client_environment: dict[str, str] = {
            names.ENV_KAFKA_BROKERS: self.bootstrap_brokers,
            names.ENV_KAFKA_AUTH: AUTH_MSK_IAM,
        }
        acknowledge(
            self,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            "the AwsCustomResource provider Lambda is owned by aws-cdk-lib and writes its own "
            "logs with AWSLambdaBasicExecutionRole",
        )

        topics_fn = HotshardFunction(
            self,
            "TopicsHandler",
            config=config,
            code_dirs=(TOPICS_HANDLER_DIR,),
            entry_file=f"{TOPICS_HANDLER_DIR}/handler.py",
            handler="infra.custom_resources.kafka_topics.handler.handler",
            service="kafka-topics",
            description="hotshard: keeps the Kafka topics as configured (custom resource)",
            vpc=network.vpc,
            security_group=network.admin_sg,
            environment={},
            layers=[layer] if (layer := deps_layer(self, config)) else [],
            timeout=Duration.minutes(5),
        )
        self.grant_kafka(topics_fn.role, admin=names.TOPICS)
        provider = cr.Provider(
            self,
            "TopicsProvider",
            on_event_handler=topics_fn.function,
            log_group=log_group(self, "TopicsProviderLogs", days=config.log_retention_days),
        )
        acknowledge(
            provider,
            "AwsSolutions-L1",
            "the Provider framework's Lambda (Node.js) belongs to aws-cdk-lib, which picks and "
            "updates its runtime; it only relays the handler's answer to CloudFormation",
        )
        acknowledge_wildcards(
            provider,
            [f"{topics_fn.function.function_arn}:*"],
            "the Provider framework may invoke any version of the one topics handler; "
            "the grant names that function",
        )
        self.topics = CustomResource(
            self,
            "Topics",
            service_token=provider.service_token,
            resource_type="Custom::KafkaTopics",
            properties={
                "BootstrapServers": self.bootstrap_brokers,
                "Region": self.region,
                "Topics": topic_specs(config),
            },
        )
        self.topics.node.add_dependency(self.cluster)

    # -- Kafka IAM access, scoped to named resources -------------------------------------

    def _prefix_arn(self, kind: str) -> str:
        """ARN of every group/transactional-id named hotshard-* on the cluster named hotshard."""
        return (
            f"arn:{self.partition}:kafka:{self.region}:{self.account}:{kind}/{CLUSTER_NAME}/*/"
            f"{names.KAFKA_GROUP_PREFIX}*"
        )

    def _arn(self, kind: str, name: str) -> str:
        """ARN of a topic/group/transactional-id of this cluster (its ARN gives name and uuid)."""
        parts = Fn.split("/", self.cluster_arn)
        return Fn.join(
            "",
            [
                f"arn:{self.partition}:kafka:{self.region}:{self.account}:{kind}/",
                Fn.select(1, parts),
                "/",
                Fn.select(2, parts),
                f"/{name}",
            ],
        )

    def topic_arn(self, topic: str) -> str:
        return self._arn("topic", topic)

    def grant_kafka(
        self,
        role: iam.IRole,
        *,
        read: Sequence[str] = (),
        write: Sequence[str] = (),
        admin: Sequence[str] = (),
        transactions: bool = False,
    ) -> None:
        """Let `role` connect with IAM auth and read/write/administer the named topics only."""
        statements = [
            iam.PolicyStatement(
                actions=["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
                + (["kafka-cluster:WriteDataIdempotently"] if write else []),
                resources=[self.cluster_arn],
            )
        ]
        if read:
            statements += [
                iam.PolicyStatement(
                    actions=["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
                    resources=[self.topic_arn(t) for t in read],
                ),
                iam.PolicyStatement(
                    actions=["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"],
                    resources=[self._prefix_arn("group")],
                ),
            ]
        if write:
            statements.append(
                iam.PolicyStatement(
                    actions=["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
                    resources=[self.topic_arn(t) for t in write],
                )
            )
        if transactions:
            statements.append(
                iam.PolicyStatement(
                    actions=[
                        "kafka-cluster:DescribeTransactionalId",
                        "kafka-cluster:AlterTransactionalId",
                    ],
                    resources=[self._prefix_arn("transactional-id")],
                )
            )
        if admin:
            statements.append(
                iam.PolicyStatement(
                    actions=[
                        "kafka-cluster:CreateTopic",
                        "kafka-cluster:DescribeTopic",
                        "kafka-cluster:AlterTopic",
                        "kafka-cluster:DescribeTopicDynamicConfiguration",
                        "kafka-cluster:AlterTopicDynamicConfiguration",
                    ],
                    resources=[self.topic_arn(t) for t in admin],
                )
            )
        for statement in statements:
            role.add_to_principal_policy(statement)
        wildcards = [self._prefix_arn("group")] if read else []
        wildcards += [self._prefix_arn("transactional-id")] if transactions else []
        acknowledge_wildcards(
            role,
            wildcards,
            "consumer groups and transactional ids are named at run time (one per engine "
            "process or consumer); the grant is limited to the hotshard- prefix on the "
            "hotshard cluster, whose uuid CloudFormation only knows after creation",
        )
