"""Names shared by the runtime and the infrastructure: Kafka topics, environment keys, metrics.

Constants only, no imports: `infra/` reads these so the CDK app and the code it deploys
agree on one spelling. Redis key formats belong here too (DESIGN §4).
"""

# Kafka topics (DESIGN §1).
TOPIC_ORDERS = "orders"
TOPIC_PENDING_ORDERS = "pending-orders"
TOPIC_FILLS = "fills"
TOPIC_TRADES = "trades"
TOPIC_DEPTH = "depth"
TOPIC_ORDER_STATUS = "order_status"
TOPICS = (
    TOPIC_ORDERS,
    TOPIC_PENDING_ORDERS,
    TOPIC_FILLS,
    TOPIC_TRADES,
    TOPIC_DEPTH,
    TOPIC_ORDER_STATUS,
)

# Environment variables the engine process reads (`python -m engine`).
ENV_KAFKA_BROKERS = "KAFKA_BROKERS"
ENV_REDIS_HOST = "REDIS_HOST"
ENV_REDIS_PORT = "REDIS_PORT"
ENV_AWS_REGION = "AWS_REGION"
ENV_GRPC_PORT = "GRPC_PORT"
ENV_LOG_LEVEL = "LOG_LEVEL"
