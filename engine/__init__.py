"""The matching engine: the pure book (engine.book) and the shells around it."""

import os
import time

STARTED_AT = time.time()
"""Wall time this package was first imported: the interpreter is up, nothing heavy is
imported yet (the start of an engine's recorded phases, engine.service.loop.Engine.mark)."""

from engine.native import choose_build  # noqa: E402

choose_build()

# The engine forks children that only dump snapshots (engine.service.forked). With its fork
# support on (grpcio's build default), gRPC pauses its threads around every fork and starts
# them again in the child, where they crashed it (SIGSEGV in about 1 move in 5). gRPC reads
# this when it is imported: here, before engine.service.control imports it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
