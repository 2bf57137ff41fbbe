"""Names shared by the runtime and the infrastructure: Kafka topics, environment keys, metrics.

Constants only, no imports: `infra/` reads these so the CDK app and the code it deploys
agree on one spelling. Redis key formats belong here too.
"""

# Kafka topics (docs/ARCHITECTURE.md).
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
STREAM_BATCH_SIZE = 500
"""Records per stream_handler invocation at most (the MSK event source mapping's BatchSize;
the local feeder reads as much)."""
STREAM_BATCH_WINDOW_S = 0
"""The event source mapping's MaximumBatchingWindowInSeconds (MSK's default is 0.5 s: every
push would wait for it). 0: invoke with what has arrived; the local feeder does the same."""

# CloudWatch metrics the engine publishes; the migration alarms watch them.
METRICS_NAMESPACE = "hotshard"
METRIC_PROCESS_CPU = "ProcessCpu"  # percent of one core used by one engine process
METRIC_SYMBOL_ORDER_RATE = "SymbolOrderRate"  # orders/s of one symbol, dimension DIM_SYMBOL
DIM_SYMBOL = "Symbol"
METRIC_LOG_REPLACED = "LogReplaced"  # partitions resumed on a replaced `orders` log (data lost)

# Environment variables the Lambdas read beyond the engine's (set by infra/).
ENV_SNAPSHOT_BUCKET = "SNAPSHOT_BUCKET"
ENV_WEBSOCKET_ENDPOINT = "WEBSOCKET_ENDPOINT"  # https://... of the Management API
ENV_ENGINE_ASG = "ENGINE_ASG"  # Auto Scaling group of the engine fleet
ENV_JWT_ISSUER = "JWT_ISSUER"  # WebSocket $connect checks tokens from this Cognito pool
ENV_JWT_AUDIENCE = "JWT_AUDIENCE"

# Redis keys; `{}` is filled in. Operations on them live in hotshard.route (routing table),
# hotshard.registry (engines, ownership) and hotshard.recovery (snapshot records, checkpoints).
REDIS_ROUTE = "route:{}"  # hash per symbol: partition, instance, status, epoch
REDIS_ENGINES = "engines"  # set of registered engine instance ids
REDIS_ENGINE = "engine:{}"  # hash per instance: address, partitions, heartbeat_ms, host, pid
REDIS_PARTITION_OWNER = "owner:orders:{}"  # string per partition: owning instance (with TTL)
REDIS_SNAPSHOT = "snapshot:{}"  # hash per symbol: location, partition, input_offset, seq, ...
REDIS_SNAPSHOT_DATA = "snapshot-data:{}:{}"  # bytes of a small snapshot: symbol, seq
REDIS_CHECKPOINT = "checkpoint:orders:{}"  # JSON per partition: where a restart resumes
# Migration (hotshard.migration): set once the PENDING_END marker for (symbol, epoch) is on
# pending-orders; a router that produced there for that epoch and then sees it answers
# STALE_ROUTE (its record may be after the marker). The fleet's claims on warm engines.
REDIS_PENDING_END = "pending-end:{}:{}"  # symbol, epoch -> "topic/partition/@start|offset"
REDIS_FLEET_CLAIM = "fleet-claim:{}"  # string per engine instance: the migration that took it
REDIS_FLEET_SCALED = "fleet-scaled:{}"  # string per execution: it raised the desired capacity
REDIS_PENDING_FROM = "pending-from:{}:{}"  # symbol, epoch: pending-orders' start of the replay
REDIS_MIGRATION_ENDED = "migration-ended:{}"  # string per symbol: ms its last migration ended
REDIS_MOVE = "move:{}:{}"  # symbol, epoch: JSON of the switch (target's start offset, time)
REDIS_MOVE_BACK = "move-back:{}:{}"  # symbol, epoch: the target's fence offset (a move-back)

# Environment variables of the engine beyond the fleet's common ones (all optional).
ENV_ENGINE_PARTITIONS = "ENGINE_PARTITIONS"  # e.g. "0-3,8": owned partitions of `orders`
ENV_ENGINE_INSTANCE_ID = "ENGINE_INSTANCE_ID"  # default: <host>-<grpc port>
ENV_KAFKA_AUTH = "KAFKA_AUTH"  # none | msk-iam
ENV_REDIS_TLS = "REDIS_TLS"  # true with ElastiCache encryption in transit
ENV_S3_ENDPOINT_URL = "S3_ENDPOINT_URL"  # local S3 (moto server); empty in AWS
ENV_SNAPSHOT_INTERVAL_S = "SNAPSHOT_INTERVAL_S"
ENV_SNAPSHOT_S3_THRESHOLD = "SNAPSHOT_S3_THRESHOLD"  # bytes; larger snapshots go to S3

# The edge (order_router, stream_handler, local gateway): Redis keys. Operations on them live
# in hotshard.route (routing table listing and moves) and hotshard.edge.
REDIS_ROUTES = "routes"  # set of listed symbols
REDIS_ROUTE_LOAD = "route-load"  # hash partition -> number of symbols routed to it
REDIS_ROUTE_EPOCHS = "route-epochs"  # hash symbol -> epoch floor of a delisted symbol
REDIS_ORDER = "order:{}:{}"  # hash per (user, order_id): idempotency record + latest status
REDIS_BALANCE = "balance:{}"  # hash per user: asset (CASH or a symbol) -> available amount
REDIS_OPEN_ORDERS = "open-orders:{}"  # sorted set per user: order_id -> claimed at (ms)
REDIS_FILLS = "fills:{}"  # stream per user: its fills, newest last, capped (GET /fills)
REDIS_PUSH_SEQ = "push-seq:{}"  # hash per user (or @SYMBOL): last seq pushed per stream
REDIS_PUSH_REPLY = "push-seq-reply:{}"  # a batch attempt's chain answer (its retry gets it)
REDIS_CONNECTION = "conn:{}"  # hash per WebSocket connection: user, connected_ms
REDIS_USER_CONNECTIONS = "user-conns:{}"  # set per user: its connection ids
REDIS_SUBSCRIBERS = "subs:{}"  # set per symbol: connection ids subscribed to depth/trades
REDIS_CONNECTION_SUBS = "conn-subs:{}"  # set per connection: its subscribed symbols
REDIS_SESSIONS_MARKER = "sessions-registry"  # the registry's generation: changed = forgotten
REDIS_DEPTH = "depth:{}"  # hash per symbol: seq of the latest depth kept
REDIS_DEPTH_SIDE = "depth:{}:{}"  # hash per (symbol, bids|asks): price -> total quantity

# Environment variables of the edge beyond the ones above (all optional).
ENV_JWT_SECRET = "JWT_SECRET"  # local HS256 secret; AWS verifies Cognito tokens (JWT_ISSUER)
ENV_JWT_USER_CLAIM = "JWT_USER_CLAIM"  # claim naming the user (default: sub)
ENV_EDGE_LIMITS = "EDGE_LIMITS"  # path of the symbols config with pre-trade limits
ENV_BALANCE_CHECK = "BALANCE_CHECK"  # true: reserve balance:{USER} for every ADD
ENV_AUTO_LIST = "AUTO_LIST"  # true: an unrouted symbol is listed on its first order
ENV_DELIVERY_TIMEOUT_MS = "DELIVERY_TIMEOUT_MS"  # how long the router waits for the ack
ENV_MANAGEMENT_SECRET = "MANAGEMENT_SECRET"  # local Management API's shared secret (not AWS)
MANAGEMENT_SECRET_HEADER = "X-Hotshard-Management-Secret"
# The WebSocket API's frame routes (a frame's `action`) besides $connect and $disconnect:
# the handler's dispatch (hotshard/edge/api.py), the local gateway and the CDK stage's routes.
WEBSOCKET_ROUTES = (
    "order",
    "replace",
    "cancel",
    "subscribe",
    "unsubscribe",
    "cancel_all",
    "cancel_on_disconnect",
    "ping",
)

# Spare partitions (infra/engine_host.py, docs/DEPLOY.md "Partitions"). `orders` (and every
# topic, which mirror its partition numbers) has regular partitions, served by the minimum
# fleet, and spare ones reserved for migration targets: warm-pool engines own them empty.
ENV_SPARE_PARTITIONS = "SPARE_PARTITIONS"  # e.g. "12-47": never list a symbol there
ENV_MIGRATION_COOLDOWN_S = "MIGRATION_COOLDOWN_S"  # s after a move in which an alarm moves nothing
# the alarms' thresholds (cdk.json): which other symbol an alarm moves while one cools down
ENV_CPU_ALARM_THRESHOLD = "CPU_ALARM_THRESHOLD"
ENV_RATE_ALARM_THRESHOLD = "SYMBOL_RATE_ALARM_THRESHOLD"
REDIS_SPARE_PARTITIONS = "spare-partitions"  # set: partitions listing never picks (warm pool)
REDIS_PARTITION_HOME = "home:orders:{}"  # string per partition: the engine whose claim on it
# survives restarts and stopped warm-pool instances (no TTL; the lease is owner:orders:{})

# Metrics beyond the two the alarms watch (namespace METRICS_NAMESPACE). The engine's
# process-level metrics carry DIM_INSTANCE (the engine instance id).
DIM_INSTANCE = "Instance"
METRIC_ORDER_RATE = "OrderRate"  # orders/s of one engine process
METRIC_CONSUMER_LAG = "ConsumerLag"  # records of owned partitions not yet consumed
# ms, per symbol (DIM_SYMBOL): an EMF histogram (Values/Counts) of every order, so p50/p99
# are CloudWatch statistics over all instances (engine/service/metrics.py)
METRIC_ORDER_TO_EVENT = "OrderToEvent"
# stream_handler (Powertools Metrics: dimension DIM_SERVICE = its service name).
DIM_SERVICE = "service"
METRIC_PUSHES = "Pushes"  # pushes posted in one batch
METRIC_PUSH_LATENCY = "PushLatency"  # ms from the event's Kafka timestamp to its push posted

# Migration outcomes. Each is the `Error` of one terminal Fail state of the migration ASL and
# the name of the metric CloudWatch Logs counts from the state machine's execution log
# (infra/migration.py); nothing at run time emits these metrics itself.
MIGRATION_ROLLED_BACK = "MigrationRolledBack"  # a step before the switch failed; rolled back
MIGRATION_FAILED_AFTER_SWITCH = "MigrationFailedAfterSwitch"  # replay or cleanup failed
MIGRATION_ROLLBACK_FAILED = "MigrationRollbackFailed"  # Rollback itself failed: may be MIGRATING
MIGRATION_NOT_STARTED = "MigrationNotStarted"  # the input named nothing movable; no change
