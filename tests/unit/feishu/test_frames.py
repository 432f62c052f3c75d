"""The hand-written pbbp2.Frame codec: known bytes, round trips, robustness."""

from __future__ import annotations

import pytest

from adapters.feishu.frames import CONTROL, DATA, Frame, FrameError, decode, encode

# Frame{SeqID 1, LogID 2, service 3, method 1, headers [type=ping], payload "hi"}, encoded by
# hand from https://protobuf.dev/programming-guides/encoding/:
#   08 01 | 10 02 | 18 03 | 20 01                      varints 1..4
#   2a 0c  0a 04 "type"  12 04 "ping"                   field 5, a 12-byte Header
#   42 02 "hi"                                          field 8, bytes
KNOWN = bytes.fromhex("0801100218032001") + b"\x2a\x0c\x0a\x04type\x12\x04ping" + b"\x42\x02hi"


def test_encode_matches_hand_encoded_bytes() -> None:
    frame = Frame(
        seq_id=1, log_id=2, service=3, method=DATA, headers=[("type", "ping")], payload=b"hi"
    )
    assert encode(frame) == KNOWN


def test_decode_hand_encoded_bytes() -> None:
    frame = decode(KNOWN)
    assert (frame.seq_id, frame.log_id, frame.service, frame.method) == (1, 2, 3, 1)
    assert frame.headers == [("type", "ping")]
    assert frame.header("type") == "ping" and frame.header("missing") is None
    assert frame.payload == b"hi"


def test_required_fields_are_written_even_when_zero() -> None:
    assert encode(Frame()) == bytes.fromhex("0800100018002000")


def test_round_trip_of_every_field() -> None:
    frame = Frame(
        seq_id=2**64 - 1,
        log_id=123456789012345,
        service=-5,
        method=CONTROL,
        headers=[("message_id", "m1"), ("sum", "2"), ("seq", "0"), ("trace", "追踪")],
        payload_encoding="gzip",
        payload_type="json",
        payload=b'{"code":200}' * 100,
        log_id_new="log-new",
    )
    assert decode(encode(frame)) == frame


def test_negative_int32_is_ten_bytes_as_protobuf_does() -> None:
    encoded = encode(Frame(service=-1))
    assert encoded[4:16] == b"\x18" + b"\xff" * 9 + b"\x01" + b"\x20"


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    extra = (
        bytes([10 << 3 | 0])
        + b"\x96\x01"  # varint
        + bytes([11 << 3 | 1])
        + b"\x00" * 8  # fixed64
        + bytes([12 << 3 | 2])
        + b"\x03abc"  # length-delimited
        + bytes([13 << 3 | 5])
        + b"\x00" * 4  # fixed32
        + b"\x80\x01\x00"  # field 16: a two-byte tag
    )
    assert decode(KNOWN + extra) == decode(KNOWN)


@pytest.mark.parametrize(
    "data",
    [
        KNOWN[:-1],  # truncated payload
        b"\x08",  # truncated varint
        b"\x08" + b"\xff" * 11,  # overlong varint
        b"\x2a\x05\x0a\x03ab",  # truncated header inside
        b"\x0b",  # wire type 3 (groups) unsupported
        b"\x00\x01",  # field number 0
        b"\x32\x02\xff\xfe",  # payload_encoding that is not UTF-8
        b"\x42\x00" + b"\x09" + b"\x00",  # truncated fixed64
    ],
)
def test_malformed_bytes_raise_frame_error(data: bytes) -> None:
    with pytest.raises(FrameError):
        decode(data)
