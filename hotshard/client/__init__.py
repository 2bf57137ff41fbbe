"""The client library of the WebSocket API and `hotshard-client`, for users of the system
(never bundled into a Lambda).

- `session`: `Client`, one WebSocket connection (requests, replies, pushes).
- `retry`: the STALE_ROUTE backoff policy and the bookkeeping of unanswered frames.
- `frames`: what the frames mean to a client (answers, stale refusals) and how to print one.
- `http`: the HTTP API's calls (open orders, one order's status, fills, ...).
- `errors`: `ClientError`.
- `cli`: the `hotshard-client` command.
"""
