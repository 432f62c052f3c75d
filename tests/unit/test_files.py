"""What a file is and what to call it: magic bytes, extensions, safe names, and
Content-Disposition (RFC 6266 / RFC 5987), including hostile input."""

from __future__ import annotations

import pytest

from gateway.files import (
    MAX_NAME_BYTES,
    disposition_filename,
    extension,
    file_name,
    file_type,
    image_type,
    safe_name,
    sniff,
    usable_type,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(16)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF"
BMP = b"BM" + bytes(4) + bytes(4) + b"\x36\x00\x00\x00" + b"\x28" + bytes(20)


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"GIF87a\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (BMP, "image/bmp"),
        (b"%PDF-1.7\n", "application/pdf"),
        (b"ID3\x04\x00\x00", "audio/mpeg"),
        (b"\xff\xfb\x90\x64", "audio/mpeg"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"OggS\x00\x02", "audio/ogg"),
        (b"#!AMR\n\x3c", "audio/amr"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00", "audio/mp4"),
        (b"\x00\x00\x00\x20ftypisom\x00\x00", "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  ", "video/quicktime"),
        (b"\x00\x00\x00\x18ftypheic", "image/heic"),
    ],
)
def test_sniff(data: bytes, mime: str) -> None:
    assert sniff(data) == mime


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x89PNG",  # truncated
        b"BM is how this text starts",
        b"RIFF\x24\x00\x00\x00AVI LIST",
        b"PK\x03\x04 a .docx is a zip",
        b"\xff\xf1\x50\x80",  # AAC, not MP3
        b"plain text",
    ],
)
def test_sniff_says_nothing_when_unsure(data: bytes) -> None:
    assert sniff(data) is None


@pytest.mark.parametrize(
    ("declared", "usable"),
    [
        ("image/png", "image/png"),
        ("Text/HTML; charset=utf-8", "text/html"),
        ("application/octet-stream", ""),
        ("binary/octet-stream", ""),
        ("", ""),
        ("image", ""),
        ("image/png/extra", ""),
        ("../../x", ""),
        ("a/" + "b" * 500, ""),
    ],
)
def test_usable_type(declared: str, usable: str) -> None:
    assert usable_type(declared) == usable


def test_file_type_prefers_the_bytes_then_a_usable_label() -> None:
    assert file_type(PNG, "image/jpeg") == "image/png"
    assert file_type(PNG, "application/octet-stream") == "image/png"
    assert file_type(b"a,b\n", "text/csv; charset=utf-8") == "text/csv"
    assert file_type(b"a,b\n", "application/octet-stream") == "application/octet-stream"
    assert file_type(b"", "") == "application/octet-stream"


def test_a_container_keeps_its_declared_audio_or_video_type() -> None:
    m4a = b"\x00\x00\x00\x20ftypisom\x00\x00"
    assert file_type(m4a, "audio/x-m4a") == "audio/x-m4a"
    assert file_type(m4a, "application/octet-stream") == "video/mp4"
    assert file_type(m4a, "text/plain") == "video/mp4"


def test_image_type() -> None:
    assert image_type(JPEG, "application/octet-stream", default="image/png") == "image/jpeg"
    assert image_type(b"\x89PNG", "image/png", default="image/jpeg") == "image/png"
    assert image_type(b"????", "application/octet-stream", default="image/png") == "image/png"
    assert image_type(b"%PDF-1.4", "application/pdf", default="image/jpeg") == "image/jpeg"


@pytest.mark.parametrize(
    ("mime", "ext"),
    [
        ("image/jpeg", ".jpg"),
        ("image/png", ".png"),
        ("audio/mp4", ".m4a"),
        ("audio/amr", ".amr"),
        ("text/plain; charset=utf-8", ".txt"),
        ("application/octet-stream", ""),
        ("application/x-no-such-type", ""),
        ("", ""),
        ("junk", ""),
    ],
)
def test_extension(mime: str, ext: str) -> None:
    assert extension(mime) == ext


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("报告 Q3.pdf", "报告 Q3.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("dir/", "dir"),
        ("a\x00b\r\nc.txt", "abc.txt"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # a right-to-left override, dropped
        ('what?<>:"|*.txt', "what_______.txt"),
        (".bashrc", "bashrc"),
        ("name. ", "name"),
        ("", "file"),
        ("..", "file"),
        ("/", "file"),
        (" \t ", "file"),
    ],
)
def test_safe_name(name: str, safe: str) -> None:
    assert safe_name(name) == safe


def test_safe_name_bounds_the_length_and_keeps_the_extension() -> None:
    long = safe_name("x" * 10_000 + ".pdf")
    assert long.endswith(".pdf") and len(long.encode()) == MAX_NAME_BYTES
    chinese = safe_name("报" * 1000 + ".docx")
    assert chinese.endswith(".docx") and len(chinese.encode()) <= MAX_NAME_BYTES
    assert chinese.startswith("报") and "\ufffd" not in chinese  # cut between characters
    assert safe_name("y" * 10_000).startswith("y") and len(safe_name("y" * 10_000)) == 200


def test_file_name() -> None:
    assert file_name("image", "image/png") == "image.png"
    assert file_name("image-1.jpg", "image/png") == "image-1.png"
    assert file_name("a.b.jpeg", "image/jpeg") == "a.b.jpg"
    assert file_name("report v1.2 final", "application/pdf") == "report v1.2 final.pdf"
    assert file_name("report.pdf", "image/png", keep_extension=True) == "report.pdf"
    assert file_name("image", "image/jpeg", keep_extension=True) == "image.jpg"
    assert file_name("data.xyz", "application/octet-stream") == "data.xyz"
    assert file_name("../x.jpg", "image/gif") == "x.gif"


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("attachment; filename*=UTF-8''%E6%8A%A5%E5%91%8A.png", "报告.png"),
        ('attachment; filename="q3 report.pdf"', "q3 report.pdf"),
        ("attachment; filename=plain.txt", "plain.txt"),
        ("ATTACHMENT; FILENAME = spaced.txt ", "spaced.txt"),
        ("attachment; filename=\"old.txt\"; filename*=utf-8'en'new%20one.txt", "new one.txt"),
        ("attachment; filename*=UTF-8''new.txt; filename=\"old.txt\"", "new.txt"),
        ("attachment; filename*=iso-8859-1''caf%E9.txt", "café.txt"),
        ('attachment; filename="a \\"quoted\\" name.txt"', "a _quoted_ name.txt"),
        ('attachment; filename="semi;colon.txt"', "semi;colon.txt"),
        ('attachment; filename="%E6%8A%A5.png"', "报.png"),  # percent-encoded, as WeCom does
        ('attachment; filename="100%.txt"', "100%.txt"),
        ('attachment; filename="%FF.txt"', "%FF.txt"),  # not UTF-8: left as it is
        ('attachment; filename="unterminated.txt', "unterminated.txt"),
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd", "passwd"),
        # Bad RFC 5987 values fall back to filename=, or give nothing.
        ("attachment; filename*=UTF-8''%ZZ.txt; filename=fallback.txt", "fallback.txt"),
        ("attachment; filename*=UTF-8''%E6%8A.txt; filename=fallback.txt", "fallback.txt"),
        ("attachment; filename*=rot13''abc.txt; filename=fallback.txt", "fallback.txt"),
        ("attachment; filename*=no-quotes.txt", None),
        ("attachment; filename*=UTF-8''%ZZ.txt", None),
        ("attachment", None),
        ("", None),
        ('attachment; filename=""', None),
        ('attachment; filename=".."', None),
        ("inline; name=field", None),
    ],
)
def test_disposition_filename(header: str, name: str | None) -> None:
    assert disposition_filename(header) == name


def test_disposition_filename_bounds_huge_names() -> None:
    name = disposition_filename("attachment; filename*=UTF-8''" + "%E6%8A%A5" * 50_000 + ".pdf")
    assert name is not None and name.endswith(".pdf")
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert disposition_filename("attachment; filename=" + "a" * 1_000_000) == "a" * 200
