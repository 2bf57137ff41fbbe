"""Reason codes: why an order was rejected or ended.

Stable numbers grouped by area (1xx input, 2xx book, 3xx routing, 4xx migration). A code is
never renumbered or reused; retired codes stay here as comments. REJECTED events, HTTP and
WebSocket errors and gRPC statuses all carry these numbers, and proto/hotshard/v1 mirrors
them (a test keeps both in step).
"""

from enum import IntEnum


class Reason(IntEnum):
    NONE = 0
    # 1xx: the input itself is wrong
    MALFORMED = 100
    UNKNOWN_SYMBOL = 101
    BAD_ACTION = 102
    BAD_SIDE = 103
    BAD_TYPE = 104
    BAD_TIME_IN_FORCE = 105
    NON_POSITIVE_QUANTITY = 106
    NON_POSITIVE_PRICE = 107
    MISSING_FIELD = 108
    BAD_ID = 109
    VALUE_OUT_OF_RANGE = 110
    # 2xx: the book refuses it
    DUPLICATE_ORDER_ID = 200
    PRICE_OFF_TICK = 201
    QUANTITY_OFF_LOT = 202
    PRICE_OUTSIDE_BAND = 203
    POST_ONLY_WOULD_CROSS = 204
    UNKNOWN_ORDER = 205
    ORDER_NOT_OPEN = 206
    MARKET_ORDER_NOT_ALLOWED = 207
    BAD_STOP_PRICE = 208
    BAD_DISPLAY_QUANTITY = 209
    DISPLAY_QUANTITY_NOT_ALLOWED = 210
    ALL_OR_NONE_NOT_ALLOWED = 211
    POST_ONLY_NOT_ALLOWED = 212
    STOP_NOT_REPLACEABLE = 213
    # 2xx, on order_status of orders that ended without a user's cancel
    SELF_TRADE_PREVENTED = 220
    IMMEDIATE_OR_CANCEL = 221
    FILL_OR_KILL = 222
    NO_LIQUIDITY = 223
    REPLACED_TO_ZERO = 224
    # 3xx: routing and the edge (authentication, pre-trade checks, delivery to the broker)
    STALE_ROUTE = 300
    UNAUTHENTICATED = 301
    USER_MISMATCH = 302
    QUANTITY_ABOVE_MAX = 303
    NOTIONAL_ABOVE_MAX = 304
    INSUFFICIENT_BALANCE = 305
    NOT_DELIVERED = 306
    ORDER_IN_FLIGHT = 307
    DEDUP_BUDGET_FULL = 308
    # 4xx: snapshots and migration (the engine's control operations)
    CORRUPT_SNAPSHOT = 400
    UNSUPPORTED_SNAPSHOT_VERSION = 401
    SYMBOL_ALREADY_HERE = 402
    SNAPSHOT_OF_ANOTHER_SYMBOL = 403
    NO_PARTITION_TO_FOLLOW = 404
    FOLLOW_OVERLAPS_SNAPSHOT = 405
    PARTITION_NOT_OWNED = 406
    PARTITION_OWNED_ELSEWHERE = 407
    NOT_DURABLE = 408
    NO_SHADOW = 409
    SYMBOL_FENCED = 410
    STATE_MISMATCH = 411
    FOLLOW_GAP = 412
    SHADOW_BEHIND = 413
    SHADOW_PAST_FENCE = 414
    HELD_FULL = 415
    UNSUPPORTED_CHECKPOINT_FORMAT = 416
    REWIND_PAST_GONE = 417
    LOG_REPLACED = 418
    # 5xx: the migration's orchestration (statemachine/tasks over hotshard.migration)
    NO_HOT_SYMBOL = 500
    BAD_MIGRATION_INPUT = 501
    INSTANCE_NOT_READY = 502
    NOT_CAUGHT_UP = 503
    ENGINE_UNAVAILABLE = 504
    STORE_UNAVAILABLE = 505
    ENGINE_CALL_FAILED = 506
    NO_TARGET = 507
    NO_BOOK = 508
    MIGRATION_COOLDOWN = 509


class HotshardError(Exception):
    """Base of typed errors: every one carries a Reason, callers never match on text."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.name}: {detail}" if detail else reason.name)
        self.reason = reason
        self.detail = detail
