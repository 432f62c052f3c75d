"""The protobuf `pbbp2.Frame` of Feishu's long connection, encoded and decoded by hand.

Schema (proto2, lark-oapi `ws/pb/pbbp2.proto`):

    message Header { required string key = 1; required string value = 2; }
    message Frame {
      required uint64 SeqID = 1;  required uint64 LogID = 2;
      required int32 service = 3; required int32 method = 4;   // 0 control, 1 data
      repeated Header headers = 5;
      optional string payload_encoding = 6; optional string payload_type = 7;
      optional bytes payload = 8;           optional string LogIDNew = 9;
    }

Wire format: https://protobuf.dev/programming-guides/encoding/. Only varints (type 0) and
length-delimited fields (type 2) occur; the decoder skips unknown fields of every type so a
newer server does not break us. Required fields are always written, even when zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONTROL = 0
DATA = 1
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MASK64 = (1 << 64) - 1


class FrameError(ValueError):
    """Bytes that are not a well-formed Frame."""


@dataclass(slots=True)
class Frame:
    seq_id: int = 0
    log_id: int = 0
    service: int = 0
    method: int = CONTROL
    headers: list[tuple[str, str]] = field(default_factory=list)
    payload_encoding: str = ""
    payload_type: str = ""
    payload: bytes = b""
    log_id_new: str = ""

    def header(self, key: str) -> str | None:
        return next((v for k, v in self.headers if k == key), None)


# --- encoding ----------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= _MASK64  # negative int32s are sign-extended to ten bytes, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _tag(number, _LEN) + _varint(len(data)) + data


def encode(frame: Frame) -> bytes:
    out = bytearray()
    for number, value in ((1, frame.seq_id), (2, frame.log_id), (3, frame.service)):
        out += _tag(number, _VARINT) + _varint(value)
    out += _tag(4, _VARINT) + _varint(frame.method)
    for key, text in frame.headers:
        header = _bytes_field(1, key.encode()) + _bytes_field(2, text.encode())
        out += _bytes_field(5, header)
    if frame.payload_encoding:
        out += _bytes_field(6, frame.payload_encoding.encode())
    if frame.payload_type:
        out += _bytes_field(7, frame.payload_type.encode())
    if frame.payload:
        out += _bytes_field(8, frame.payload)
    if frame.log_id_new:
        out += _bytes_field(9, frame.log_id_new.encode())
    return bytes(out)


# --- decoding ----------------------------------------------------------------------------


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise FrameError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & _MASK64, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for every field, in order."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise FrameError("field number 0")
        value: int | bytes
        if wire_type == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire_type == _LEN:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise FrameError("truncated length-delimited field")
            value, pos = data[pos : pos + length], pos + length
        elif wire_type in (_I64, _I32):
            size = 8 if wire_type == _I64 else 4
            if pos + size > len(data):
                raise FrameError("truncated fixed-width field")
            value, pos = data[pos : pos + size], pos + size
        else:
            raise FrameError(f"unsupported wire type {wire_type}")
        out.append((number, wire_type, value))
    return out


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise FrameError("expected a length-delimited field")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError("string field is not UTF-8") from exc


def _header(data: int | bytes) -> tuple[str, str]:
    if not isinstance(data, bytes):
        raise FrameError("header is not a message")
    key = value = ""
    for number, _, item in _fields(data):
        if number == 1:
            key = _text(item)
        elif number == 2:
            value = _text(item)
    return key, value


def decode(data: bytes) -> Frame:
    frame = Frame()
    for number, wire_type, value in _fields(data):
        if number in (1, 2, 3, 4):
            if wire_type != _VARINT or not isinstance(value, int):
                raise FrameError(f"field {number} is not a varint")
            if number == 1:
                frame.seq_id = value
            elif number == 2:
                frame.log_id = value
            elif number == 3:
                frame.service = _int32(value)
            else:
                frame.method = _int32(value)
        elif number == 5:
            frame.headers.append(_header(value))
        elif number == 6:
            frame.payload_encoding = _text(value)
        elif number == 7:
            frame.payload_type = _text(value)
        elif number == 8:
            if not isinstance(value, bytes):
                raise FrameError("payload is not bytes")
            frame.payload = value
        elif number == 9:
            frame.log_id_new = _text(value)
    # A missing required field reads as zero: lenient, so a server that drops zero values
    # does not cost us events.
    return frame
