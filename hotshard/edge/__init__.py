"""The edge: what sits between clients and Kafka (DESIGN §6).

- `settings`: EdgeSettings, read once from the environment by each Lambda (and the gateway).
- `auth`: JWT checks (HS256 shared secret locally, Cognito RS256 in AWS).
- `limits`: pre-trade checks (price band, max quantity, max notional).
- `orders`: per-(user, order_id) records in Redis: idempotency, reservation, latest status.
- `router`: the order path (validate, check, route, produce with delivery confirmed).
- `connections`: WebSocket connection -> user, symbol subscriptions.
- `api`: API Gateway events (WebSocket routes, HTTP API) -> router calls -> responses.
- `push`: the stream handler's work: event records -> JSON pushes via the Management API.
- `gateway`, `feeder`: the local stand-ins for API Gateway and the MSK event source mapping.
- `client`, `cli`: a WebSocket client library and `hotshard-client`.
"""
