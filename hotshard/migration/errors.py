"""Typed errors of the migration tasks. A Lambda that raises one fails with `errorType` = the
class name, which is what the ASL's Retry and Catch match (statemachine/migration.asl.json):
never rename one without the definition."""

from hotshard.reasons import HotshardError, Reason


class MigrationError(HotshardError):
    """Base: a step that cannot go on; Catch -> Rollback (or NotStarted, FailedAfterSwitch)."""


class NoHotSymbol(MigrationError):  # noqa: N818 - the ASL's error name
    """Nothing worth moving (ends the execution as NothingToMove): no hot symbol, the
    symbol is on its target already (NO_HOT_SYMBOL), or it has no book yet (NO_BOOK)."""

    def __init__(self, detail: str, reason: Reason = Reason.NO_HOT_SYMBOL) -> None:
        super().__init__(reason, detail)


class BadInput(MigrationError):  # noqa: N818
    def __init__(self, detail: str) -> None:
        super().__init__(Reason.BAD_MIGRATION_INPUT, detail)


class NoTarget(MigrationError):  # noqa: N818
    def __init__(self, detail: str) -> None:
        super().__init__(Reason.NO_TARGET, detail)


class EngineCallFailed(MigrationError):  # noqa: N818 - the ASL's error name
    """An engine refused a control call; `engine_reason` is the engine's own Reason."""

    def __init__(self, call: str, engine_reason: Reason, detail: str, status: str = "") -> None:
        super().__init__(Reason.ENGINE_CALL_FAILED, f"{call}: {engine_reason.name}: {detail}")
        self.call = call
        self.engine_reason = engine_reason
        self.status = status  # the gRPC status code's name (NOT_FOUND, ...)


class RollbackImpossible(MigrationError):  # noqa: N818
    """The state the execution left cannot be put back safely by itself (an operator must)."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.BAD_MIGRATION_INPUT, detail)


class Transient(MigrationError):  # noqa: N818
    """Base of the errors the ASL retries (with backoff) before its Catch sees them."""


class InstanceNotReady(Transient):
    def __init__(self, detail: str) -> None:
        super().__init__(Reason.INSTANCE_NOT_READY, detail)


class NotCaughtUp(Transient):
    def __init__(self, detail: str) -> None:
        super().__init__(Reason.NOT_CAUGHT_UP, detail)


class EngineUnavailable(Transient):
    def __init__(self, detail: str) -> None:
        super().__init__(Reason.ENGINE_UNAVAILABLE, detail)


class StoreUnavailable(Transient):
    def __init__(self, detail: str) -> None:
        super().__init__(Reason.STORE_UNAVAILABLE, detail)
