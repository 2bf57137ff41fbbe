"""Real services on free 127.0.0.1 ports, one launcher per module: `broker` (Tansu), `redis`,
`moto` (the local AWS endpoint), `rclone` (a durable S3 for Tansu), `engine` (`python -m
engine`), `gateway` (`python -m hotshard.local.edge`); `process` is what they share.

Each start checks that what answers on the port is the process it started, and each exit
stops the process and removes its files: parallel test workers and demos never collide
and leave nothing behind. Used by tests, `hotshard demo` and bench/.
"""
