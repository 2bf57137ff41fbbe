"""Python enums and proto enums are one vocabulary: same names, same numbers."""

import pytest

from hotshard import domain
from hotshard.reasons import Reason
from hotshard.v1 import domain_pb2


@pytest.mark.parametrize(
    "enum",
    [
        domain.Action,
        domain.Side,
        domain.OrderType,
        domain.TimeInForce,
        domain.Status,
        domain.Liquidity,
        Reason,
    ],
)
def test_python_and_proto_enums_agree(enum):
    proto = domain_pb2.DESCRIPTOR.enum_types_by_name[enum.__name__]
    proto_values = {v.name: v.number for v in proto.values if v.number or enum is Reason}
    assert proto_values == {m.name: m.value for m in enum}


def test_an_id_is_one_to_max_id_length_safe_characters():
    assert domain.is_id("a") and domain.is_id("x" * domain.MAX_ID_LENGTH)
    assert not domain.is_id("")
    assert not domain.is_id("x" * (domain.MAX_ID_LENGTH + 1))
    assert not domain.is_id("a/b")
