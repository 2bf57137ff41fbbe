"""The engine service's errors, in one place.

A control request that cannot be served raises a `ControlError` subclass: the class names
the gRPC status it is answered with (engine.service.control), the Reason (hotshard.reasons)
says why, so a caller (the migration, a test) acts on the code and never on the text.

`EngineFailedError` is not an answer to anyone: the engine cannot go on safely and exits
non-zero, for its supervisor to restart it from its checkpoint.
"""

from typing import ClassVar, Literal

from hotshard.reasons import HotshardError

GrpcStatus = Literal[
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "INVALID_ARGUMENT",
    "DATA_LOSS",
    "FAILED_PRECONDITION",
    "UNAVAILABLE",
]
"""Names of the grpc.StatusCode members a ControlError maps to."""


class ControlError(HotshardError):
    """A control request that cannot be served."""

    status: ClassVar[GrpcStatus]


class NotHereError(ControlError):
    """The symbol is not held here, or the snapshot asked for does not exist."""

    status = "NOT_FOUND"


class AlreadyHereError(ControlError):
    """A Restore of a symbol this engine already holds."""

    status = "ALREADY_EXISTS"


class BadRequestError(ControlError):
    """A request that can never succeed as asked (mismatched snapshot, nothing to follow,
    an unknown snapshot version)."""

    status = "INVALID_ARGUMENT"


class CorruptSnapshotError(ControlError):
    """The snapshot's bytes are damaged (checksum, truncation)."""

    status = "DATA_LOSS"


class NotOwnedError(ControlError):
    """The request needs a partition this engine does not (or cannot) own."""

    status = "FAILED_PRECONDITION"


class NotDurableError(ControlError):
    """Events are not yet delivered, or the change could not be checkpointed: nothing
    changed, retry."""

    status = "UNAVAILABLE"


class SnapshotRefusedError(HotshardError):
    """The snapshot record was not written: this instance no longer owns the partition."""


class SnapshotMissingError(HotshardError):
    """A snapshot location that holds nothing (expired, never written, wrong bucket)."""


class EngineFailedError(Exception):
    """The engine cannot go on safely (lost ownership, an event not delivered): exit
    non-zero and let the supervisor restart it from its checkpoint."""
