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

# Kafka consumer groups and transactional ids all start with this (IAM policies scope on it).
KAFKA_GROUP_PREFIX = "hotshard-"

# CloudWatch metrics the engine publishes; the migration alarms watch them.
METRICS_NAMESPACE = "hotshard"
METRIC_PROCESS_CPU = "ProcessCpu"  # percent of one core used by one engine process
METRIC_SYMBOL_ORDER_RATE = "SymbolOrderRate"  # orders/s of one symbol, dimension DIM_SYMBOL
DIM_SYMBOL = "Symbol"

# Environment variables the Lambdas read beyond the engine's (set by infra/).
ENV_SNAPSHOT_BUCKET = "SNAPSHOT_BUCKET"
ENV_WEBSOCKET_ENDPOINT = "WEBSOCKET_ENDPOINT"  # https://... of the Management API
ENV_ENGINE_ASG = "ENGINE_ASG"  # Auto Scaling group of the engine fleet
ENV_JWT_ISSUER = "JWT_ISSUER"  # WebSocket $connect checks tokens from this Cognito pool
ENV_JWT_AUDIENCE = "JWT_AUDIENCE"
