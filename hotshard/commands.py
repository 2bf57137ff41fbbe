"""Commands the book accepts: plain tuples, one shape for every action.

    (action, order_id, user_id, side, type, tif, post_only, price, quantity)

Enum fields hold plain ints (see hotshard.domain for their names). CANCEL uses only
order_id and user_id; REPLACE uses order_id, user_id, price and quantity
(the new total quantity, FIX style). Tuples keep the hot path cheap; build them with the
functions below, which name every field.
"""

from hotshard.domain import Action, OrderType, Side, TimeInForce

Command = tuple[int, str, str, int, int, int, bool, int, int]

ACTION, ORDER_ID, USER_ID, SIDE, TYPE, TIF, POST_ONLY, PRICE, QUANTITY = range(9)


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
    )


def cancel(order_id: str, user_id: str) -> Command:
    return (int(Action.CANCEL), order_id, user_id, 0, 0, 0, False, 0, 0)


def replace(order_id: str, user_id: str, price: int, quantity: int) -> Command:
    return (int(Action.REPLACE), order_id, user_id, 0, 0, 0, False, price, quantity)
