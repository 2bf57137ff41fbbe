"""The edge: what runs behind API Gateway, between clients and Kafka (docs/ARCHITECTURE.md).
The order_router and stream_handler Lambdas are thin shells over it; it imports nothing of
hotshard.local or hotshard.client.

- `settings`: EdgeSettings, read once from the environment by each Lambda (and the gateway).
- `auth`: JWT checks (HS256 shared secret locally, Cognito RS256 in AWS).
- `limits`: PreTradeLimits, the pre-trade checks (price band, max quantity, max notional).
- `orders`: per-(user, order_id) records in Redis: idempotency, reservation, latest status.
- `router`: the order path (validate, check, route, produce with delivery confirmed).
- `sessions`: WebSocket connection -> user, symbol subscriptions.
- `api`: API Gateway events (WebSocket routes, HTTP API) -> router calls -> responses.
- `push`: the stream handler's work: event records -> JSON pushes via the Management API.
- `depth`: the latest depth of each symbol in Redis, for polling clients.
"""
