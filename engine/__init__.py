"""The matching engine: the pure book (engine.book) and the shells around it."""

import os

from engine.native import choose_build

choose_build()

# The engine forks children that only dump snapshots (engine.service.forked). With its fork
# support on (grpcio's build default), gRPC pauses its threads around every fork and starts
# them again in the child, where they crashed it (SIGSEGV in about 1 move in 5). gRPC reads
# this when it is imported: here, before engine.service.control imports it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
