"""The wire format in plain Python (custom_components/data_exchange/protocol.py)."""

from __future__ import annotations

import ctypes
from decimal import Decimal
import math
import struct
from typing import Any

from hypothesis import example, given, strategies as st
import pytest

from custom_components.data_exchange.engine import ExchangeEngine
from custom_components.data_exchange.float32 import (
    canonical_number,
    f32,
    format_f32,
    strtof,
)
from custom_components.data_exchange.protocol import (
    MAX_DESIRED_VALUES_BYTES,
    PROTOCOL_VERSION,
    REFUSAL_REASONS,
    DesiredFrame,
    Model,
    NodeFrame,
    PointType,
    ProtocolError,
    ProtocolVersionError,
    Refusal,
    decode_value,
    decode_values,
    encode_value,
    encode_values,
)

MODEL_EVENT = {
    "v": "5",
    "m": "0a1b2c3d",
    "c": "1000",
    "t": "0",
    "p": "S00000001,B00000002,T00000003,N00000004,W00000005,L00000006,X00000007",
    "b": "0123456789abcdef",
    "u": "98765",
    "s": "41",
    "k": "00112233445566ff",
}


def desired_frame(*args: Any, **kwargs: Any) -> dict[str, int | str]:
    """The arguments of a desired frame, through the engine's own encoder."""
    return DesiredFrame.of(*args, **kwargs).args()


def _model() -> Model:
    return Model.from_event(MODEL_EVENT)


def _frame(**changes: str) -> dict[str, str]:
    data = {
        "v": "5",
        "m": "0a1b2c3d",
        "s": "7",
        "u": "123456",
        "a": "3",
        "q": "1",
        "f": "0",
        "r": "0",
        "e": "",
        "o": "0",
        "x": "21.5,1,'ok,22,0,'eco,'",
    }
    data.update(changes)
    return data


def test_model_from_event() -> None:
    model = _model()
    assert PROTOCOL_VERSION == 5
    assert model.model_id == "0a1b2c3d"
    assert model.cycle_ms == 1000
    assert [p.type for p in model.points] == list(PointType)
    assert model.points[3].key == 4
    assert model.writable == (3, 4, 5, 6)
    assert model.boot_id == "0123456789abcdef"
    assert model.uptime_ms == 98765
    assert model.node_seq == 41


def test_model_identity_excludes_where_the_node_stood() -> None:
    """Boot id, uptime and last frame say where the node is, not what its model is."""
    other = Model.from_event(
        {**MODEL_EVENT, "b": "fedcba9876543210", "u": "1", "s": "0"}
    )
    assert other == _model()


def test_model_counters_are_64_bit() -> None:
    model = Model.from_event({**MODEL_EVENT, "u": str(2**64 - 1), "s": str(2**64 - 1)})
    assert model.uptime_ms == model.node_seq == 2**64 - 1


@pytest.mark.parametrize(
    "change",
    [
        {"v": "1"},  # protocol 1: 32-bit integer arguments, no boot id
        {"v": "2"},  # protocol 2: no change frames
        {"v": "3"},  # protocol 3: change frames with the whole header
        {"v": "4"},  # protocol 4: before the keys of issue 17
        {"v": "6"},
        {"m": "XYZ"},
        {"p": ""},
        {"p": "Q00000001"},
        {"p": "S0001"},
        {"c": "-1"},
        {"c": "1e3"},
        {"b": ""},
        {"b": "0123456789abcde"},  # 15 digits
        {"b": "0123456789abcdef0"},  # 17
        {"b": "0123456789ABCDEF"},  # uppercase
        {"b": "0123456789abcdeg"},
        {"u": "-5"},
        {"s": "1.0"},
        {"s": "1" * 21},
    ],
)
def test_model_rejects(change: dict[str, str]) -> None:
    with pytest.raises(ProtocolError):
        Model.from_event({**MODEL_EVENT, **change})


@pytest.mark.parametrize("key", ["p", "b", "u", "s"])
def test_model_missing_field(key: str) -> None:
    data = dict(MODEL_EVENT)
    del data[key]
    with pytest.raises(ProtocolError, match="missing field"):
        Model.from_event(data)


def test_frame_from_event() -> None:
    frame = NodeFrame.from_event(_frame(), _model())
    assert frame.seq == 7
    assert frame.uptime_ms == 123456
    assert frame.applied_seq == 3
    assert frame.acquisition_running
    assert not frame.failsafe_active
    assert frame.refused_frames == 0
    assert frame.refusal is None
    assert frame.values == (21.5, True, "ok", 22.0, False, "eco", "")


def test_frame_counters_are_64_bit() -> None:
    top = str(2**64 - 1)
    frame = NodeFrame.from_event(
        _frame(s=top, u=top, a=top, r=top, e=f"{top}:3:length"), _model()
    )
    assert frame.seq == frame.uptime_ms == frame.applied_seq == 2**64 - 1
    assert frame.refused_frames == 2**64 - 1
    assert frame.refusal == Refusal(2**64 - 1, 3, "length")


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("", None),
        ("12:0:step", Refusal(12, 0, "step")),
        ("12:3:option", Refusal(12, 3, "option")),
        ("5::model", Refusal(5, None, "model")),
        ("5::count", Refusal(5, None, "count")),
        ("0::format", Refusal(0, None, "format")),  # seq unreadable: 0
    ],
)
def test_frame_refusal(text: str, refusal: Refusal | None) -> None:
    frame = NodeFrame.from_event(_frame(r="1", e=text), _model())
    assert frame.refused_frames == 1
    assert frame.refusal == refusal


def test_refusal_reasons_are_the_rules_codes_and_the_frames() -> None:
    from custom_components.data_exchange.rules import Refusal as Rule

    assert {r.value for r in Rule} | {"model", "count", "acquisition"} == set(
        REFUSAL_REASONS
    )


@pytest.mark.parametrize(
    "text",
    [
        "12:0",
        "12:0:step:x",
        "12:0:bogus",
        "12:0:STEP",
        "x:0:step",
        "-1:0:step",
        "12:-1:step",
        "12:a:step",
        ":0:step",
        "1" * 21 + ":0:step",
        "\uff11:0:step",  # FULLWIDTH DIGIT ONE
        "12 :0:step",
    ],
)
def test_frame_rejects_malformed_refusal(text: str) -> None:
    with pytest.raises(ProtocolError, match="refusal"):
        NodeFrame.from_event(_frame(e=text), _model())


def test_frame_without_refusal_key_has_no_refusal() -> None:
    """Key e is new in protocol 2; a frame without it has no refusal to report."""
    data = _frame()
    del data["e"]
    assert NodeFrame.from_event(data, _model()).refusal is None


def test_frame_of_other_model() -> None:
    with pytest.raises(ProtocolError) as err:
        NodeFrame.from_event(_frame(m="ffffffff"), _model())
    assert "'ffffffff'" in str(err.value)


@pytest.mark.parametrize(
    "change",
    [
        {"v": "0"},
        {"v": "1"},
        {"v": "2"},
        {"v": "3"},
        {"v": "11"},
        # Change frames: positions ascending, in range, one per value.
        {"i": ""},
        {"i": "0,0", "x": "1,2"},
        {"i": "3,1", "x": "22,1"},
        {"i": "7", "x": "1"},
        {"i": "1", "x": "1,2"},
        {"i": "-1", "x": "1"},
        {"i": "0,1,2,3,4,5,6,7", "x": "21.5,1,'ok,22,0,'eco,',1"},
        {"i": "a", "x": "1"},
        {"s": "-1"},
        {"s": "1.5"},
        {"s": "\uff19"},  # FULLWIDTH DIGIT NINE: a digit, but not ASCII
        {"s": "1" * 21},
        {"r": "-1"},
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
        # The fail-safe's points at their safe values: ascending, in range.
        {"f": "1", "y": "4,3"},
        {"f": "1", "y": "7"},
        {"f": "1", "y": "3,"},
        {"f": "1", "y": "x"},
    ],
)
def test_frame_rejects_malformed(change: dict[str, str]) -> None:
    with pytest.raises(ProtocolError):
        NodeFrame.from_event(_frame(**change), _model())


def test_the_fail_safe_says_which_points_hold_its_safe_values() -> None:
    frame = NodeFrame.from_event(_frame(f="1", y="3,4"), _model())
    assert frame.failsafe_active
    assert frame.safe_points == frozenset({3, 4})
    assert NodeFrame.from_event(_frame(f="1", y=""), _model()).safe_points == set()
    # An older node does not say: None (every point counts as set by the fail-safe).
    assert NodeFrame.from_event(_frame(f="1"), _model()).safe_points is None


def test_change_frame_carries_the_points_at_its_positions() -> None:
    frame = NodeFrame.from_event(_frame(i="1,6", x="0,'a%2Cb"), _model())
    assert frame.indices == (1, 6)
    assert frame.values == (False, "a,b")
    full = NodeFrame.from_event(_frame(), _model())
    assert full.indices is None
    assert full.full
    assert not frame.full
    assert len(full.values) == len(_model().points)


def test_a_change_frame_carries_values_only() -> None:
    """Protocol 4: the node's state (a q f r e o) travels in full frames only; a change
    frame without it is well-formed, a full frame without it is not."""
    header = {"v": "5", "m": "0a1b2c3d", "s": "8", "u": "123457"}
    frame = NodeFrame.from_event({**header, "i": "3", "x": "23"}, _model())
    assert (frame.seq, frame.indices, frame.values) == (8, (3,), (23.0,))
    for key in "aqfreo":
        data = _frame()
        del data[key]
        if key == "e":  # an empty refusal may be left out
            NodeFrame.from_event(data, _model())
            continue
        with pytest.raises(ProtocolError):
            NodeFrame.from_event(data, _model())


_FIELDS = NodeFrame.__dataclass_fields__


def _every_field(frame: NodeFrame) -> dict[str, object]:
    """All fields, also those left out of ``==`` (ages, node time, values text, header)."""
    fields = {name: getattr(frame, name) for name in _FIELDS}
    fields["ages"] = tuple(fields["ages"])
    return fields


# Fields of a full frame as a node may send them, right or wrong: the decode with the
# previous frame must do exactly what the decode without it does.
_FIELD_TEXTS = {
    "s": st.sampled_from(["8", "9", "-1", "1" * 21, ""]),
    "u": st.sampled_from(["123457", "123458", "x"]),
    "w": st.sampled_from(["0,0,0,0,0,0,0", "5,,5,5,5,5,5", "1,2", "a,0,0,0,0,0,0"]),
    "d": st.sampled_from(["1764800000000", "-5"]),
    "a": st.sampled_from(["3", "4", "z"]),
    "f": st.sampled_from(["0", "1"]),
    "y": st.sampled_from(["", "3", "9"]),
    "x": st.sampled_from(["21.5,1,'ok,22,0,'eco,'", "21.5,0,'ok,22,0,'eco,'", "nan"]),
    "e": st.sampled_from(["", "3:1:range", "bad"]),
    "o": st.sampled_from(["0", "2"]),
    "r": st.sampled_from(["0", "1"]),
    "l": st.sampled_from(["0", "5", "x"]),  # a node with a backlog
    "n": st.sampled_from(["0", "17"]),
}


@given(
    st.dictionaries(
        st.sampled_from(sorted(_FIELD_TEXTS)), st.none(), max_size=5
    ).flatmap(lambda keys: st.fixed_dictionaries({k: _FIELD_TEXTS[k] for k in keys})),
    st.dictionaries(
        st.sampled_from(sorted(_FIELD_TEXTS)), st.none(), max_size=5
    ).flatmap(lambda keys: st.fixed_dictionaries({k: _FIELD_TEXTS[k] for k in keys})),
)
def test_a_frame_decodes_the_same_after_any_previous_frame(
    first: dict[str, str], second: dict[str, str]
) -> None:
    """A cycle frame that differs from the last one only in its clock (s, u, w, d) is
    that frame at a new clock (protocol.py): differential against the plain decode."""
    model = _model()
    try:
        previous = NodeFrame.from_event(_frame(**first), model)
    except ProtocolError:
        return
    data = _frame(**{**first, **second})
    try:
        plain = NodeFrame.from_event(data, model)
    except ProtocolError:
        with pytest.raises(ProtocolError):
            NodeFrame.from_event(data, model, previous)
        return
    assert _every_field(NodeFrame.from_event(data, model, previous)) == _every_field(
        plain
    )


def test_a_cycle_frame_with_a_new_clock_only_is_the_last_one_at_that_clock() -> None:
    model = _model()
    previous = NodeFrame.from_event(_frame(w="0,0,0,0,0,0,0"), model)
    frame = NodeFrame.from_event(
        _frame(s="8", u="124456", w="1000,1000,1000,1000,1000,1000,1000"),
        model,
        previous,
    )
    assert frame.values is previous.values  # not decoded again
    assert (frame.seq, frame.uptime_ms, tuple(frame.ages)) == (8, 124456, (1000,) * 7)
    with pytest.raises(ProtocolError):  # the new clock is still checked
        NodeFrame.from_event(_frame(s="8", u="-1"), model, previous)


def test_another_version_is_named() -> None:
    with pytest.raises(ProtocolVersionError) as err:
        Model.from_event({**MODEL_EVENT, "v": "2"})
    assert err.value.version == "2"


# ---- numbers: 32-bit floats and their shortest text ----

floats32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


def _bits(value: float) -> int:
    return int(struct.unpack("<I", struct.pack("<f", value))[0])


def _from_bits(bits: int) -> float:
    return float(struct.unpack("<f", struct.pack("<I", bits))[0])


def _c_strtof() -> object:
    libc = ctypes.CDLL(None)
    fn = libc.strtof
    fn.restype = ctypes.c_float
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    return fn


C_STRTOF = _c_strtof()


def c_strtof(text: str) -> float:
    """The C library's strtof (what the node runs), through ctypes."""
    return float(C_STRTOF(text.encode(), None))  # type: ignore[operator]


@given(floats32)
@example(123456792.0)
@example(f32(0.1))
@example(f32(1.4e-45))  # the smallest subnormal
@example(3.4028234663852886e38)  # the largest float
@example(-0.0)
def test_number_round_trip(value: float) -> None:
    encoded = encode_value(PointType.NUMBER, value)
    # What the node does with the text: strtof gives the same 32-bit float back.
    assert strtof(encoded) == value
    assert c_strtof(encoded) == value
    decoded = decode_value(PointType.NUMBER, encoded)
    assert decoded == canonical_number(value)
    assert f32(decoded) == value  # Home Assistant's double is the node's float
    assert encode_value(PointType.NUMBER, decoded) == encoded  # one text per number


@given(floats32)
@example(123456792.0)
@example(16777216.0)
@example(f32(163.85))
def test_format_f32_is_the_shortest_that_reads_back(value: float) -> None:
    """format_f32: the first of %.6g .. %.9g that strtof reads back as the same float."""
    text = format_f32(value)
    candidates = [f"{value:.{p}g}" for p in range(6, 10)]
    assert text in candidates
    assert c_strtof(text) == value
    for shorter in candidates[: candidates.index(text)]:
        assert c_strtof(shorter) != value
    # %.9g always reads back, so it never falls through.
    assert c_strtof(candidates[-1]) == value


@given(floats32)
def test_canonical_number_is_stable(value: float) -> None:
    canonical = canonical_number(value)
    assert canonical_number(canonical) == canonical
    assert format_f32(canonical) == format_f32(value)
    assert f32(canonical) == value


def test_float32_examples() -> None:
    assert canonical_number(123456789) == 123456790.0
    assert format_f32(123456789) == "1.2345679e+08"
    assert f32(123456789) == 123456792.0
    assert format_f32(0.1) == "0.1"
    assert format_f32(163.85) == "163.85"
    assert format_f32(1e20) == "1e+20"
    assert f32(1e39) == math.inf
    assert f32(-1e39) == -math.inf


def _midpoints() -> st.SearchStrategy[str]:
    """Decimal texts at or within a hair of the midpoint between two adjacent floats.

    Read through a double first, such a text can round twice and land on the wrong float;
    strtof must decide as the C library does.
    """

    @st.composite
    def build(draw: st.DrawFn) -> str:
        bits = draw(st.integers(0, 0x7F7FFFFE))
        below, above = _from_bits(bits), _from_bits(bits + 1)
        middle = (Decimal(below) + Decimal(above)) / 2  # exact
        nudge = draw(st.sampled_from([0, 1, -1]))
        text = format(middle + nudge * Decimal("1e-60") * max(middle, Decimal(1)), "f")
        return draw(st.sampled_from([text, "-" + text]))

    return build()


@given(_midpoints())
@example("16777217")  # ties to even: 16777216
@example("16777219")  # ties to even: 16777220
@example("0.100000001490116119384765625")  # exactly 0.1f
def test_strtof_matches_the_c_library(text: str) -> None:
    assert _bits(strtof(text)) == _bits(c_strtof(text))


@given(st.text())
def test_string_round_trip(value: str) -> None:
    encoded = encode_value(PointType.TEXT, value)
    assert "," not in encoded
    assert decode_value(PointType.TEXT, encoded) == value


@given(st.lists(st.one_of(st.none(), st.text(), floats32, st.booleans()), max_size=20))
def test_values_round_trip(values: list[object]) -> None:
    types = []
    expected: list[object] = []
    for v in values:
        if isinstance(v, bool):
            types.append(PointType.SWITCH)
        elif isinstance(v, float):
            types.append(PointType.SENSOR)
        else:
            types.append(PointType.SELECT)
        expected.append(canonical_number(v) if isinstance(v, float) else v)
    if not types:
        return
    assert list(decode_values(encode_values(types, values), types)) == expected


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


# ---- desired frames ----


def test_desired_frame() -> None:
    args = desired_frame(_model(), 5, 7, [21.5, True, None, "a,b"], acquisition=False)
    assert args == {
        "token": "00112233445566ff",
        "seq": "5",
        "seen": "7",
        "model": "0a1b2c3d",
        "values": "21.5,1,,'a%2Cb",
        "acquisition": 0,
        "backlog": "0",
    }
    assert desired_frame(_model(), 1, 0, [None] * 4)["acquisition"] == -1


def test_the_token_is_required_and_never_stored() -> None:
    """Desired frames carry the node's per-boot secret (only Data Exchange gets it)."""
    with pytest.raises(ProtocolError, match="'k'"):
        Model.from_event({k: v for k, v in MODEL_EVENT.items() if k != "k"})
    with pytest.raises(ProtocolError, match="'k'"):
        Model.from_event({**MODEL_EVENT, "k": "not-hex-at-all!!"})
    assert "00112233445566ff" not in repr(_model())
    stored = Model.from_event(
        {k: v for k, v in MODEL_EVENT.items() if k != "k"}, stored=True
    )
    assert stored.token == ""
    assert stored.points == _model().points


def test_desired_frame_numbers_are_the_nodes() -> None:
    args = desired_frame(_model(), 1, 0, [123456789, None, None, None])
    assert args["values"] == "1.2345679e+08,,,"


@given(
    seq=st.integers(1, 2**64 - 1),
    seen=st.integers(0, 2**64 - 1),
    acquisition=st.sampled_from([None, True, False]),
)
def test_desired_frame_is_the_one_encoder(
    seq: int, seen: int, acquisition: bool | None
) -> None:
    """The frame the engine sends is encoded by DesiredFrame, the frame tests build too.

    Sequence numbers are decimal strings (the API's integer arguments are 32-bit).
    """
    model = _model()
    values = [0.1, False, "eco", "x"]
    args = desired_frame(model, seq, seen, values, acquisition)
    engine = ExchangeEngine(1.0)
    engine.set_model(model)
    for index, value in zip(model.writable, values, strict=True):
        engine.write(index, value, "user:test", 0.0)
    if acquisition is not None:
        engine.write_acquisition(acquisition, "user:test", 0.0)
    engine.desired_seq, engine.seen = seq - 1, seen
    assert engine.next_desired_frame(0.0).args() == args
    assert args["seq"] == str(seq)
    assert args["seen"] == str(seen)
    assert isinstance(args["acquisition"], int)
    assert -(2**31) <= args["acquisition"] < 2**31


def test_desired_frame_size_limit() -> None:
    with pytest.raises(ValueError, match="receive limit"):
        desired_frame(
            _model(), 1, 0, [None, None, None, "x" * MAX_DESIRED_VALUES_BYTES]
        )


def test_an_unchanged_full_frame_reuses_the_decoded_values() -> None:
    """Most cycle frames repeat the last one's values: they are not decoded again."""
    model = _model()
    first = NodeFrame.from_event(_frame(), model)
    again = NodeFrame.from_event(_frame(s="8"), model, first)
    assert again.values is first.values
    assert again.seq == 8
    other = NodeFrame.from_event(
        _frame(s="9", x="21.6,1,'ok,22,0,'eco,'"), model, again
    )
    assert other.values is not first.values
    assert other.values[0] == 21.6
    change = NodeFrame.from_event(_frame(s="10", i="0", x="21.7"), model, other)
    assert change.values == (21.7,)
    # A malformed header is refused whatever the values text.
    with pytest.raises(ProtocolError):
        NodeFrame.from_event(_frame(s="-1"), model, first)
