"""Commands the book accepts: plain tuples, one shape for every action.

    (action, order_id, user_id, side, type, tif, post_only, price, quantity,
     stop_price, display_quantity, all_or_none)

Enum fields hold plain ints (see hotshard.domain for their names). CANCEL uses only
order_id and user_id; REPLACE uses order_id, user_id, price and quantity
(the new total quantity, FIX style). The last three fields are 0 / False for a plain order:
`stop_price` for STOP and STOP_LIMIT, `display_quantity` for an iceberg (the visible part),
`all_or_none` for an order that trades only its whole quantity at once. Tuples keep the hot
path cheap; build them with the functions below, which name every field.
"""

from hotshard.domain import Action, OrderType, Side, TimeInForce

Command = tuple[int, str, str, int, int, int, bool, int, int, int, int, bool]

(
    ACTION,
    ORDER_ID,
    USER_ID,
    SIDE,
    TYPE,
    TIF,
    POST_ONLY,
    PRICE,
    QUANTITY,
    STOP_PRICE,
    DISPLAY_QUANTITY,
    ALL_OR_NONE,
) = range(12)


def add(
    order_id: str,
    user_id: str,
    side: Side,
    price: int,
    quantity: int,
    *,
    order_type: OrderType = OrderType.LIMIT,
    tif: TimeInForce = TimeInForce.GTC,
    post_only: bool = False,
    stop_price: int = 0,
    display_quantity: int = 0,
    all_or_none: bool = False,
) -> Command:
    return (
        int(Action.ADD),
        order_id,
        user_id,
        int(side),
        int(order_type),
        int(tif),
        post_only,
        price,
        quantity,
        stop_price,
        display_quantity,
        all_or_none,
    )


def cancel(order_id: str, user_id: str) -> Command:
    return (int(Action.CANCEL), order_id, user_id, 0, 0, 0, False, 0, 0, 0, 0, False)


def replace(order_id: str, user_id: str, price: int, quantity: int) -> Command:
    return (int(Action.REPLACE), order_id, user_id, 0, 0, 0, False, price, quantity, 0, 0, False)
