"""Everything that exists only to run hotshard on one machine, with no AWS account: the only
package that may import lambdas/ and statemachine/, and never bundled into a Lambda.

- `gateway`, `feeder`, `shapes`: the local stand-ins for API Gateway (WebSocket, HTTP and
  Management APIs) and the MSK event source mapping, and the event shapes AWS sends.
- `edge`: the gateway with the real Lambda handlers and the feeder, as one process.
- `services/`: launchers of real services on free ports (Tansu, Redis, moto, rclone,
  engine processes, the local edge), one per module.
- `flow`: synthetic order flow; `traffic`: producing orders and reading events directly.
- `demo/`: what `hotshard demo` runs.
"""
