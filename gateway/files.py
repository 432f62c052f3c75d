"""What a file is and what to call it: the type from its first bytes, an extension, a safe
name, and the name a `Content-Disposition` header gives (RFC 6266, with RFC 5987's
`filename*=UTF-8''…`).

Platform-neutral: adapters use it for the files users send, and it serves just as well for
files an app returns. Platforms label files loosely (`application/octet-stream` for a photo,
the ciphertext's type for an encrypted download), and Dify judges a file by its extension
and type, so the bytes decide where they can.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from urllib.parse import unquote_to_bytes

OCTET_STREAM = "application/octet-stream"
MAX_NAME_BYTES = 200  # file systems allow 255; leave room for a prefix or a counter

# (offset, magic bytes, type): formats whose first bytes say what they are, unambiguously.
# ZIP is left out on purpose: .docx, .xlsx and .apk are all ZIPs, and the label knows better.
_SIGNATURES = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"OggS", "audio/ogg"),
    (0, b"#!AMR\n", "audio/amr"),
    (8, b"WEBP", "image/webp"),  # after "RIFF" and a length, checked below
    (8, b"WAVE", "audio/wav"),
)
_FTYP_BRANDS = {  # ISO base media files: the major brand says which kind
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"qt  ": "video/quicktime",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heic",
    b"avif": "image/avif",
}
# Containers whose bytes do not say what is inside (an .m4a is often branded "isom", like a
# video): a declared audio or video type is the better guess for them.
_CONTAINERS = {"video/mp4", "audio/mp4", "audio/ogg"}
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/heic": ".heic",
    "image/avif": ".avif",
    "application/pdf": ".pdf",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "audio/ogg": ".ogg",
    "audio/amr": ".amr",
    "audio/mp4": ".m4a",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
}
_GENERIC = {OCTET_STREAM, "binary/octet-stream", "application/unknown"}
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def sniff(data: bytes) -> str | None:
    """The MIME type the first bytes of `data` show, or None."""
    for offset, magic, mime in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (offset == 0 or data[:4] == b"RIFF"):
            return mime
    if data[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(data[8:12], "video/mp4")
    # BMP's "BM" alone is too weak (a text file may start so): its reserved bytes are zero.
    if data[:2] == b"BM" and len(data) >= 26 and data[6:10] == bytes(4):
        return "image/bmp"
    # An MP3 without an ID3 tag starts with a frame: 11 sync bits, then layer III.
    if len(data) >= 4 and data[0] == 0xFF and data[1] & 0xE6 == 0xE2:
        return "audio/mpeg"
    return None


def usable_type(declared: str) -> str:
    """`declared` (a Content-Type) without parameters, in lower case, if it names a real
    type; else "" (missing, junk, or only "some bytes")."""
    mime = declared.split(";", 1)[0].strip().lower()
    return mime if _MIME.fullmatch(mime) and mime not in _GENERIC else ""


def file_type(data: bytes, declared: str = "") -> str:
    """The MIME type of `data`: what its bytes show, else the usable declared type, else
    `application/octet-stream`."""
    sniffed, usable = sniff(data), usable_type(declared)
    if sniffed is None:
        return usable or OCTET_STREAM
    if sniffed in _CONTAINERS and usable.split("/")[0] in ("audio", "video"):
        return usable
    return sniffed


def image_type(data: bytes, declared: str, default: str) -> str:
    """The MIME type of a file the platform says is an image; `default` when neither the
    bytes nor the label name an image type."""
    mime = file_type(data, declared)
    return mime if mime.startswith("image/") else default


def extension(mime: str) -> str:
    """The usual extension of `mime` (".jpg" for image/jpeg), or "" when none is known."""
    mime = usable_type(mime)
    if not mime:
        return ""
    return _EXTENSIONS.get(mime) or mimetypes.guess_extension(mime) or ""


def _split(name: str) -> tuple[str, str]:
    """(stem, ".ext"); only a short alphanumeric tail counts as an extension."""
    stem, dot, ext = name.rpartition(".")
    if dot and stem and 0 < len(ext) <= 16 and ext.isalnum():
        return stem, f".{ext}"
    return name, ""


def safe_name(name: str, default: str = "file") -> str:
    """`name` as a plain file name: its last path component only, without control or
    invisible format characters (a right-to-left override can disguise `gpj.exe`),
    Windows-reserved characters replaced, no leading or trailing dots or spaces, at most
    MAX_NAME_BYTES of UTF-8 with the extension kept. `default` when nothing is left."""
    visible = "".join(
        ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp")
    )
    parts = [p for p in re.split(r"[/\\]", visible) if p.strip(" .")]
    name = re.sub(r'[<>:"|?*]', "_", parts[-1] if parts else "").strip(" .")
    stem, ext = _split(name)
    room = MAX_NAME_BYTES - len(ext.encode())
    if len(stem.encode()) > room:
        stem = stem.encode()[:room].decode(errors="ignore").rstrip(" .")
        name = f"{stem}{ext}" if stem else ""
    return name or default


def file_name(name: str, mime: str, *, keep_extension: bool = False) -> str:
    """A safe name for a file of type `mime`: `name` with the type's extension, in place of
    its own (or only when it has none, with `keep_extension`)."""
    name = safe_name(name)
    ext = extension(mime)
    stem, own = _split(name)
    if not ext or (keep_extension and own):
        return name
    return f"{stem}{ext}"


# One `; name=value` parameter; the value is a quoted string (with \-escapes) or a token.
_PARAM = re.compile(r';\s*([^\s;=]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_EXT_VALUE = re.compile(r"([A-Za-z0-9!#$&+^_`{}~-]+)'[^']*'((?:%[0-9A-Fa-f]{2}|[^%])*)")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")


def disposition_filename(header: str) -> str | None:
    """The file name a Content-Disposition header gives, made safe; None when it has none.

    `filename*` (RFC 5987: `UTF-8''%E6%8A%A5.pdf`) wins over `filename`. A plain `filename`
    with %-escapes that decode as UTF-8 is decoded too, as servers in China often send it."""
    params: dict[str, str] = {}
    for match in _PARAM.finditer(";" + header):
        key, value = match.group(1).lower(), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        else:  # a quote left open
            value = value.strip('"')
        params.setdefault(key, value)
    name = _extended(params.get("filename*", "")) or _plain(params.get("filename", ""))
    return safe_name(name, default="") or None


def _extended(value: str) -> str:
    match = _EXT_VALUE.fullmatch(value)
    charset = match.group(1).lower() if match else ""
    if match is None or charset not in ("utf-8", "iso-8859-1"):  # the two RFC 5987 names
        return ""
    try:
        return unquote_to_bytes(match.group(2)).decode(charset)
    except UnicodeDecodeError:
        return ""


def _plain(value: str) -> str:
    if not _PERCENT.search(value):
        return value
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return value
