"""Fuzzed desired frames for a real node, and a model of what the node must do with each.

Written from docs/protocol.md, independent of the integration's code: the frames go
through the native API (aioesphomeapi) as Home Assistant sends them, and the node's
answers are read raw (the event's keys), so neither side's codec judges the other.

``Oracle`` is the node's rule for desired frames on the simulated node's writable points
(setpoint, relay, led_brightness, mode, label), with their traits from the entity info:
for each frame it says refused (why, which point), ignored (not from Data Exchange: no or
wrong token) or applied, and the values the node must then report. Numbers are read with
the C library's own strtof (ctypes), as the node reads them.

``FrameFuzzer`` makes frames: valid ones (random values on the points' grids, options,
texts with escapes and multi-byte characters), the same mutated field by field (lengths,
escapes, numbers at float limits, huge counts, wrong model ids, truncated UTF-8, a % at the
end, sequence numbers at and past 64 bits, bad tokens), and random ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import ctypes
from dataclasses import dataclass, field
import math
import random
import struct
from typing import Any

from aioesphomeapi import APIClient, HomeassistantServiceCall, UserService

FRAME_EVENT = "esphome.data_exchange"
MODEL_EVENT = "esphome.data_exchange_model"
HEAP_EVENT = "esphome.dx_probe_heap"
WRITE_ACTION = "data_exchange_write"
DESCRIBE_ACTION = "data_exchange_describe"
WRITABLE_TYPES = {"N", "W", "L", "X"}
# The API drops an incoming message over 32,768 bytes (docs/protocol.md, Limits); frames
# stay under it, so every frame reaches the node's rule.
MAX_VALUES_BYTES = 30_000
UINT64_MAX = 2**64 - 1

_libc = ctypes.CDLL(None)
_libc.strtof.restype = ctypes.c_float
_libc.strtof.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]


def c_strtof(text: bytes) -> tuple[float, int]:
    """strtof as the node calls it: the value and how many bytes it read."""
    buffer = ctypes.create_string_buffer(text)
    end = ctypes.c_char_p()
    value = _libc.strtof(buffer, ctypes.byref(end))
    consumed = ctypes.cast(end, ctypes.c_void_p).value or 0
    start = ctypes.cast(buffer, ctypes.c_void_p).value or 0
    return float(value), consumed - start


def f32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def encode_float(value: float) -> str:
    """The shortest %.6g..%.9g text that reads back as the same float (docs/protocol.md)."""
    if not math.isfinite(value):
        return ""
    text = ""
    for precision in range(6, 10):
        text = f"{value:.{precision}g}"
        if c_strtof(text.encode())[0] == value:
            break
    return text


def utf8_ok(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def encode_string(data: bytes) -> str:
    """A string field: quote, then the bytes with %, ',' and control characters escaped."""
    out = ["'"]
    text = data.decode("utf-8", errors="replace")
    for char in text:
        code = ord(char)
        if char in "%," or code < 0x20 or code == 0x7F:
            out.append(f"%{code:02X}")
        else:
            out.append(char)
    return "".join(out)


_HEX = b"0123456789abcdefABCDEF"


def decode_string(field_text: str) -> bytes | None:
    """The bytes of a string field, or None if it is malformed."""
    raw = field_text.encode()
    if not raw or raw[0:1] != b"'":
        return None
    out = bytearray()
    i = 1
    while i < len(raw):
        if raw[i : i + 1] == b"%":
            digits = raw[i + 1 : i + 3]
            if i + 2 >= len(raw) or not all(c in _HEX for c in digits):
                return None
            out.append(int(digits, 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def parse_u64(text: str) -> int | None:
    if not text or len(text) > 20 or not all(c in "0123456789" for c in text):
        return None
    value = int(text)
    return value if value <= UINT64_MAX else None


def check_number(v: float, lo: float, hi: float, step: float) -> str | None:
    """rules.h check_number, in double precision as there."""
    if not math.isfinite(v):
        return "format"
    if v < lo or v > hi:
        return "range"
    if step > 0:
        k = math.floor((v - lo) / step + 0.5)
        grid = lo + k * step
        tolerance = step * 1e-3 + (abs(v) + abs(lo)) * 2.0**-21
        if abs(v - grid) > tolerance:
            return "step"
    return None


@dataclass
class Writable:
    """A writable point with the traits its entity info reports (32-bit floats)."""

    type: str
    name: str
    minimum: float = 0.0
    maximum: float = 0.0
    step: float = 0.0
    options: list[str] = field(default_factory=list)
    min_length: int = 0
    max_length: int = 255


@dataclass
class Frame:
    """One desired frame as sent (the action's arguments)."""

    token: str
    seq: str
    seen: str
    model: str
    values: str
    acquisition: int
    kind: str = "valid"  # which mutation made it (for messages)

    def args(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "seq": self.seq,
            "seen": self.seen,
            "model": self.model,
            "values": self.values,
            "acquisition": self.acquisition,
            "backlog": "0",
        }


@dataclass
class Verdict:
    outcome: str  # "applied", "refused", "ignored"
    refusal: str = ""  # the node's key e for a refused frame
    changed: bool = False


class Oracle:
    """What the node must do with each desired frame (docs/protocol.md)."""

    def __init__(
        self, points: list[Writable], model_id: str, token: str, state: list[str]
    ) -> None:
        self.points = points
        self.model_id = model_id
        self.token = token
        self.state = list(state)  # the encoded values the node reports
        self.acquisition = True

    def validate(self, point: Writable, text: str, current: str) -> str | None:
        if text in ("", current):
            return None
        if point.type == "N":
            raw = text.encode()
            value, consumed = c_strtof(raw)
            if not raw or consumed != len(raw) or not math.isfinite(value):
                return "format"
            return check_number(value, point.minimum, point.maximum, point.step)
        if point.type == "W":
            return None if text in ("0", "1") else "format"
        data = decode_string(text)
        if data is None or not utf8_ok(data):
            return "format"
        if point.type == "L":
            return None if data.decode() in point.options else "option"
        if not point.min_length <= len(data) <= point.max_length:
            return "length"
        return None

    def canonical(self, point: Writable, text: str) -> str:
        """The value as the node reports it once applied."""
        if point.type == "N":
            return encode_float(c_strtof(text.encode())[0])
        if point.type == "W":
            return text
        data = decode_string(text)
        assert data is not None
        return encode_string(data)

    def judge(self, frame: Frame) -> Verdict:
        """The verdict on ``frame``; the model's state follows an applied frame."""
        if frame.token != self.token:
            return Verdict("ignored")
        seq = parse_u64(frame.seq)
        seen = parse_u64(frame.seen)
        number = str(seq if seq is not None else 0)
        if seq is None or seen is None:
            return Verdict("refused", f"{number}::format")
        if frame.model != self.model_id:
            return Verdict("refused", f"{number}::model")
        if not -1 <= frame.acquisition <= 1:
            return Verdict("refused", f"{number}::acquisition")
        fields = frame.values.split(",")
        if not self.points and frame.values == "":
            fields = []
        if len(fields) != len(self.points):
            return Verdict("refused", f"{number}::count")
        for index, (point, text) in enumerate(zip(self.points, fields, strict=True)):
            reason = self.validate(point, text, self.state[index])
            if reason is not None:
                return Verdict("refused", f"{number}:{index}:{reason}")
        changed = False
        for index, (point, text) in enumerate(zip(self.points, fields, strict=True)):
            if text == "":
                continue
            new = self.canonical(point, text)
            changed |= new != self.state[index]
            self.state[index] = new
        if frame.acquisition >= 0 and (frame.acquisition == 1) != self.acquisition:
            self.acquisition = frame.acquisition == 1
            changed = True
        return Verdict("applied", changed=changed)


# ---- frames ----

FLOAT_LIMITS = [
    "3.4028235e+38",
    "-3.4028235e+38",
    "3.40282357e+38",
    "3.4028236e+38",
    "1e39",
    "-1e39",
    "1.17549435e-38",
    "1.4e-45",
    "1e-46",
    "-0",
    "0",
    "nan",
    "-nan",
    "inf",
    "-inf",
    "infinity",
    "NAN(123)",
    "0x1p3",
    "0x1.8p4",
    "0X10",
    " 22",
    "22 ",
    "+22",
    "2e1",
    ".5",
    "5.",
    "22abc",
    "1e",
    "1e+",
    "--1",
    "1,5",
    "1.5.5",
    "22\x00",
    "9" * 60,
    "0." + "0" * 200 + "1",
    "1" + "0" * 38,
    "1" + "0" * 39,
    "21.5000000000000000000001",
    "2.15e1",
    "0021.5",
]
BAD_STRINGS = [
    "",
    "'",
    "'%",
    "'%4",
    "'abc%",
    "'abc%4",
    "'%G1",
    "'%%",
    "'%zz",
    "'%2C",
    "'%00",
    "'%7F",
    "'%C3",
    "'%C3%A9",
    "'%E2%82",
    "'%E2%82%AC",
    "'%F0%9F%98",
    "'%ED%A0%80",
    "'%C0%80",
    "'%FF",
    "no quote",
    "''",
    "'é",
    "'\u20ac",
    "'\U0001f600",
    "'a%2Cb",
    "'%41",
]


def _random_text(rng: random.Random, length: int) -> str:
    alphabet = "abcXYZ019 %,'\t\n\u00e9\u00b0\u20ac\U0001f600\x7f\x01"
    return "".join(rng.choice(alphabet) for _ in range(length))


class FrameFuzzer:
    """Valid frames, the same mutated field by field, and random ones."""

    def __init__(
        self, rng: random.Random, points: list[Writable], model_id: str, token: str
    ) -> None:
        self.rng = rng
        self.points = points
        self.model_id = model_id
        self.token = token
        self.seq = 0

    def valid_value(self, point: Writable) -> str:
        rng = self.rng
        if rng.random() < 0.15:
            return ""  # no desired value
        if point.type == "N":
            steps = round((point.maximum - point.minimum) / point.step)
            return encode_float(f32(point.minimum + rng.randint(0, steps) * point.step))
        if point.type == "W":
            return rng.choice("01")
        if point.type == "L":
            return encode_string(rng.choice(point.options).encode())
        # A text within its length in bytes (multi-byte characters count by their bytes).
        while True:
            data = _random_text(rng, rng.randint(0, point.max_length)).encode()
            if point.min_length <= len(data) <= point.max_length:
                return encode_string(data)

    def valid(self) -> Frame:
        self.seq += 1
        values = ",".join(self.valid_value(p) for p in self.points)
        return Frame(
            self.token,
            str(self.seq),
            str(UINT64_MAX),
            self.model_id,
            values,
            self.rng.choice((-1, -1, 0, 1)),
        )

    def mutated(self) -> Frame:
        frame = self.valid()
        rng = self.rng
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            mutate: Callable[[Frame], None] = rng.choice(self._mutations)
            mutate(frame)
        return frame

    def random(self) -> Frame:
        rng = self.rng
        self.seq += 1

        def junk() -> str:
            return _random_text(rng, rng.randint(0, 24))

        token = self.token if rng.random() < 0.8 else junk()
        seq = str(self.seq) if rng.random() < 0.7 else junk()
        values = ",".join(junk() for _ in range(rng.randint(0, 8)))
        return Frame(
            token,
            seq,
            rng.choice((str(UINT64_MAX), junk())),
            self.model_id if rng.random() < 0.8 else junk(),
            values,
            rng.choice((-1, 0, 1, 2, -2, 2**31 - 1, -(2**31))),
            "random",
        )

    def next(self) -> Frame:
        roll = self.rng.random()
        if roll < 0.25:
            frame = self.valid()
        elif roll < 0.85:
            frame = self.mutated()
        else:
            frame = self.random()
        raw = frame.values.encode()
        if len(raw) > MAX_VALUES_BYTES:  # in bytes: the API's limit is on the message
            frame.values = raw[:MAX_VALUES_BYTES].decode(errors="ignore")
        return frame

    # ---- mutations, one field at a time ----

    def _fields(self, frame: Frame) -> list[str]:
        return frame.values.split(",")

    def _set_field(self, frame: Frame, index: int, text: str) -> None:
        fields = self._fields(frame)
        if index < len(fields):
            fields[index] = text
            frame.values = ",".join(fields)

    def _number_field(self, frame: Frame) -> None:
        index = self.rng.choice(
            [i for i, p in enumerate(self.points) if p.type == "N"] or [0]
        )
        self._set_field(frame, index, self.rng.choice(FLOAT_LIMITS))
        frame.kind = "number"

    def _near_number(self, frame: Frame) -> None:
        # Just off the grid or the range, by one float step or by the tolerance.
        rng = self.rng
        candidates = [i for i, p in enumerate(self.points) if p.type == "N"]
        if not candidates:
            return
        index = rng.choice(candidates)
        point = self.points[index]
        base = rng.choice((point.minimum, point.maximum, point.minimum + point.step))
        delta = rng.choice(
            (0.0, point.step * 1e-3, point.step * 2e-3, point.step / 2, 1e-7, -1e-7)
        )
        value = f32(base + delta)
        value = math.nextafter(value, rng.choice((math.inf, -math.inf)))
        self._set_field(frame, index, encode_float(f32(value)))
        frame.kind = "near-number"

    def _string_field(self, frame: Frame) -> None:
        candidates = [i for i, p in enumerate(self.points) if p.type in "LX"]
        index = self.rng.choice(candidates or [0])
        self._set_field(frame, index, self.rng.choice(BAD_STRINGS))
        frame.kind = "string"

    def _length(self, frame: Frame) -> None:
        rng = self.rng
        candidates = [i for i, p in enumerate(self.points) if p.type == "X"]
        if not candidates:
            return
        index = rng.choice(candidates)
        point = self.points[index]
        length = rng.choice(
            (point.max_length, point.max_length + 1, point.max_length - 1, 0, 1000)
        )
        char = rng.choice(("a", "\u00e9", "%", ",", "\u20ac"))
        self._set_field(frame, index, encode_string((char * length).encode()))
        frame.kind = "length"

    def _count(self, frame: Frame) -> None:
        rng = self.rng
        fields = self._fields(frame)
        choice = rng.randrange(5)
        if choice == 0 and fields:
            fields.pop(rng.randrange(len(fields)))
        elif choice == 1:
            fields.insert(rng.randrange(len(fields) + 1), rng.choice(("", "1", "'x")))
        elif choice == 2:
            frame.values = ""
            frame.kind = "count"
            return
        else:
            # A huge count: the frame as long as the API takes.
            filler = rng.choice((",", "1,", "'a,", ",,,,"))
            room = MAX_VALUES_BYTES - len(frame.values.encode()) - 1
            fields.append(filler * (room // len(filler)))
        frame.values = ",".join(fields)
        frame.kind = "count"

    def _model(self, frame: Frame) -> None:
        frame.model = self.rng.choice(
            (
                "00000000",
                self.model_id.upper(),
                self.model_id[:-1],
                self.model_id + "0",
                "",
                " " + self.model_id,
                f"{(int(self.model_id, 16) ^ 1):08x}",
            )
        )
        frame.kind = "model"

    def _sequence(self, frame: Frame) -> None:
        text = self.rng.choice(
            (
                "",
                "-1",
                "+1",
                " 1",
                "1 ",
                "0x10",
                "1e3",
                "12a",
                str(UINT64_MAX),
                str(UINT64_MAX + 1),
                "9" * 21,
                "0" * 20,
                "0" * 21,
                "00000000000000000001",
                "\u0661",  # an Arabic-Indic digit one
            )
        )
        if self.rng.random() < 0.5:
            frame.seq = text
        else:
            frame.seen = text
        frame.kind = "sequence"

    def _acquisition(self, frame: Frame) -> None:
        frame.acquisition = self.rng.choice((-2, 2, 7, 2**31 - 1, -(2**31), -1, 0, 1))
        frame.kind = "acquisition"

    def _token(self, frame: Frame) -> None:
        frame.token = self.rng.choice(
            ("", self.token[:-1], self.token.upper(), self.token + "0", "x" * 16)
        )
        frame.kind = "token"

    def _truncate(self, frame: Frame) -> None:
        # The values cut anywhere: mid-escape, mid-character, after a comma.
        cut = self.rng.randint(0, len(frame.values))
        frame.values = frame.values[:cut]
        frame.kind = "truncated"

    @property
    def _mutations(self) -> list[Callable[[Frame], None]]:
        return [
            self._number_field,
            self._number_field,
            self._near_number,
            self._string_field,
            self._string_field,
            self._length,
            self._count,
            self._model,
            self._sequence,
            self._acquisition,
            self._token,
            self._truncate,
        ]


# ---- a raw client ----


@dataclass
class RawFrame:
    """A node frame's keys, as sent."""

    data: dict[str, str]

    @property
    def seq(self) -> int:
        return int(self.data["s"])

    @property
    def applied(self) -> int:
        return int(self.data["a"])

    @property
    def refused(self) -> int:
        return int(self.data["r"])

    @property
    def foreign(self) -> int:
        return int(self.data["o"])

    def writable(self, positions: list[int]) -> list[str]:
        values = self.data["x"].split(",")
        return [values[i] for i in positions]


class RawClient:
    """A Data Exchange client that keeps the node's events as they are."""

    def __init__(self, host: str, port: int) -> None:
        self.api = APIClient(host, port, None, client_info="data_exchange fuzz")
        self.services: dict[str, UserService] = {}
        self.entities: dict[int, Any] = {}
        self.frames: list[RawFrame] = []
        self.events: asyncio.Queue[HomeassistantServiceCall] = asyncio.Queue()
        self._changed = asyncio.Event()
        self.model: dict[str, str] = {}

    async def connect(self) -> RawClient:
        await self.api.connect(login=True)
        entities, services = await self.api.list_entities_services()
        self.entities = {e.key: e for e in entities}
        self.services = {s.name: s for s in services}
        self.api.subscribe_service_calls(self._on_call)
        self.model = await self.request(DESCRIBE_ACTION, {}, MODEL_EVENT)
        return self

    async def disconnect(self) -> None:
        await self.api.disconnect()

    def _on_call(self, call: HomeassistantServiceCall) -> None:
        if call.is_event and call.service == FRAME_EVENT:
            if "i" in call.data or "h" in call.data:
                return  # a change frame (key i) or a backlog frame (key h): not judged
            self.frames.append(RawFrame(dict(call.data)))
            self._changed.set()
        else:
            self.events.put_nowait(call)

    async def request(
        self,
        action: str,
        args: dict[str, Any],
        event: str,
        timeout: float = 10,  # noqa: ASYNC109 - a test helper's deadline
    ) -> dict[str, str]:
        """Call ``action`` and return the data of the next ``event``."""
        await self.api.execute_service(self.services[action], args)
        async with asyncio.timeout(timeout):
            while True:
                call = await self.events.get()
                if call.is_event and call.service == event:
                    return dict(call.data)

    async def send(self, frame: Frame) -> None:
        # Returns once the request is written: frames go out back to back, in order.
        await self.api.execute_service(self.services[WRITE_ACTION], frame.args())

    async def frame_where(
        self,
        predicate: Callable[[RawFrame], bool],
        timeout: float = 10,  # noqa: ASYNC109 - a test helper's deadline
        start: int = 0,
    ) -> RawFrame:
        """The first frame from index ``start`` on that satisfies ``predicate``."""
        index = start
        async with asyncio.timeout(timeout):
            while True:
                while index < len(self.frames):
                    frame = self.frames[index]
                    index += 1
                    if predicate(frame):
                        return frame
                self._changed.clear()
                await self._changed.wait()

    def writable_points(self) -> tuple[list[Writable], list[int]]:
        """The writable points in model order with their traits, and their positions."""
        keys = {}
        for info in self.entities.values():
            keys[f"{info.key:08x}"] = info
        points: list[Writable] = []
        positions: list[int] = []
        for position, item in enumerate(self.model["p"].split(",")):
            kind, key = item[0], item[1:]
            if kind not in WRITABLE_TYPES:
                continue
            info = keys[key]
            point = Writable(kind, info.object_id)
            if kind == "N":
                point.minimum = f32(info.min_value)
                point.maximum = f32(info.max_value)
                point.step = f32(info.step)
            elif kind == "L":
                point.options = list(info.options)
            elif kind == "X":
                point.min_length = info.min_length
                point.max_length = info.max_length
            points.append(point)
            positions.append(position)
        return points, positions
