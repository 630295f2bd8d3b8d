"""The wire format in plain Python (custom_components/data_exchange/protocol.py)."""

from __future__ import annotations

import struct

from hypothesis import given, strategies as st
import pytest

from custom_components.data_exchange.protocol import (
    MAX_DESIRED_VALUES_BYTES,
    Model,
    NodeFrame,
    PointType,
    ProtocolError,
    decode_value,
    decode_values,
    desired_frame,
    encode_value,
    encode_values,
)

MODEL_EVENT = {
    "v": "1",
    "m": "0a1b2c3d",
    "c": "1000",
    "t": "0",
    "p": "S00000001,B00000002,T00000003,N00000004,W00000005,L00000006,X00000007",
}


def _model() -> Model:
    return Model.from_event(MODEL_EVENT)


def _frame(**changes: str) -> dict[str, str]:
    data = {
        "v": "1",
        "m": "0a1b2c3d",
        "s": "7",
        "u": "123456",
        "a": "3",
        "q": "1",
        "f": "0",
        "r": "0",
        "x": "21.5,1,'ok,22,0,'eco,'",
    }
    data.update(changes)
    return data


def test_model_from_event() -> None:
    model = _model()
    assert model.model_id == "0a1b2c3d"
    assert model.cycle_ms == 1000
    assert [p.type for p in model.points] == list(PointType)
    assert model.points[3].key == 4
    assert model.writable == (3, 4, 5, 6)


@pytest.mark.parametrize(
    "change",
    [
        {"v": "2"},
        {"m": "XYZ"},
        {"p": ""},
        {"p": "Q00000001"},
        {"p": "S0001"},
        {"c": "-1"},
        {"c": "1e3"},
    ],
)
def test_model_rejects(change: dict[str, str]) -> None:
    with pytest.raises(ProtocolError):
        Model.from_event({**MODEL_EVENT, **change})


def test_model_missing_field() -> None:
    data = dict(MODEL_EVENT)
    del data["p"]
    with pytest.raises(ProtocolError, match="missing field"):
        Model.from_event(data)


def test_frame_from_event() -> None:
    frame = NodeFrame.from_event(_frame(), _model())
    assert frame.seq == 7
    assert frame.uptime_ms == 123456
    assert frame.applied_seq == 3
    assert frame.acquisition_running
    assert not frame.failsafe_active
    assert frame.values == (21.5, True, "ok", 22.0, False, "eco", "")


def test_frame_unknown_values() -> None:
    frame = NodeFrame.from_event(_frame(x=",,,,,,"), _model())
    assert frame.values == (None,) * 7


def test_frame_of_other_model() -> None:
    with pytest.raises(ProtocolError) as err:
        NodeFrame.from_event(_frame(m="ffffffff"), _model())
    assert "'ffffffff'" in str(err.value)


@pytest.mark.parametrize(
    "change",
    [
        {"v": "0"},
        {"v": "11"},
        {"s": "-1"},
        {"s": "1.5"},
        {"s": "\uff19"},  # FULLWIDTH DIGIT NINE: a digit, but not ASCII
        {"q": "2"},
        {"x": "21.5,1,'ok,22,0,'eco"},  # one value short
        {"x": "21.5,1,'ok,22,0,'eco,',"},  # one too many
        {"x": "nan,1,'ok,22,0,'eco,'"},
        {"x": "NaN,1,'ok,22,0,'eco,'"},
        {"x": "inf,1,'ok,22,0,'eco,'"},  # a conforming node sends infinity as unknown
        {"x": "-inf,1,'ok,22,0,'eco,'"},
        {"x": "1e999,1,'ok,22,0,'eco,'"},  # overflows to infinity
        {"x": "0x10,1,'ok,22,0,'eco,'"},
        {"x": "1_000,1,'ok,22,0,'eco,'"},
        {"x": " 1,1,'ok,22,0,'eco,'"},
        {"x": "21.5,yes,'ok,22,0,'eco,'"},
        {"x": "21.5,1,ok,22,0,'eco,'"},
        {"x": "21.5,1,'%ZZ,22,0,'eco,'"},
        {"x": "21.5,1,'%4,22,0,'eco,'"},
        {"x": "1" * 70000},
    ],
)
def test_frame_rejects_malformed(change: dict[str, str]) -> None:
    with pytest.raises(ProtocolError):
        NodeFrame.from_event(_frame(**change), _model())


floats32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@given(floats32)
def test_number_round_trip(value: float) -> None:
    encoded = encode_value(PointType.NUMBER, value)
    decoded = decode_value(PointType.NUMBER, encoded)
    assert decoded == value
    # What the node does with it: strtof to a 32-bit float gives the same float back.
    assert struct.unpack("f", struct.pack("f", decoded))[0] == value


@given(st.text())
def test_string_round_trip(value: str) -> None:
    encoded = encode_value(PointType.TEXT, value)
    assert "," not in encoded
    assert decode_value(PointType.TEXT, encoded) == value


@given(st.lists(st.one_of(st.none(), st.text(), floats32, st.booleans()), max_size=20))
def test_values_round_trip(values: list[object]) -> None:
    types = []
    for v in values:
        if isinstance(v, bool):
            types.append(PointType.SWITCH)
        elif isinstance(v, float):
            types.append(PointType.SENSOR)
        else:
            types.append(PointType.SELECT)
    if not types:
        return
    assert list(decode_values(encode_values(types, values), types)) == values


def test_encode_rejects_wrong_types() -> None:
    with pytest.raises(TypeError):
        encode_value(PointType.SWITCH, 1.0)
    with pytest.raises(TypeError):
        encode_value(PointType.NUMBER, True)
    with pytest.raises(TypeError):
        encode_value(PointType.TEXT, 3.0)
    with pytest.raises(ValueError, match="NaN"):
        encode_value(PointType.NUMBER, float("nan"))
    with pytest.raises(ValueError, match="infinities"):
        encode_value(PointType.NUMBER, float("-inf"))


def test_desired_frame() -> None:
    args = desired_frame(_model(), 5, 7, [21.5, True, None, "a,b"], acquisition=False)
    assert args == {
        "seq": 5,
        "seen": 7,
        "model": "0a1b2c3d",
        "values": "21.5,1,,'a%2Cb",
        "acquisition": 0,
    }
    assert desired_frame(_model(), 1, 0, [None] * 4)["acquisition"] == -1


def test_desired_frame_size_limit() -> None:
    with pytest.raises(ValueError, match="receive limit"):
        desired_frame(
            _model(), 1, 0, [None, None, None, "x" * MAX_DESIRED_VALUES_BYTES]
        )
