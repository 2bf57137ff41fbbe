"""The client library of the WebSocket API and `hotshard-client`, for users of the system
(never bundled into a Lambda).

- `session`: `Client`, one WebSocket connection (requests, replies, pushes).
- `retry`: the STALE_ROUTE backoff policy and the bookkeeping of unanswered frames.
- `frames`: what the frames mean to a client (answers, stale refusals) and how to print one.
- `cli`: the `hotshard-client` command.
"""
