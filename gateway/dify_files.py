"""Files an app produces, as Dify hands them out, and fetching them.

Dify links its files as `{FILES_URL}/files/…?timestamp&nonce&sign`, and `FILES_URL` is empty
by default on a self-hosted Dify, so the links are often root-relative (`/files/tools/…`):
they resolve against the Dify origin (the API base without `/v1`) or `files_base_url`. The
signature expires after 300 s, so a file is fetched as soon as it is named, and such a link
never goes into the chat: it may name an internal host, and it stops working anyway.

Chatflow and workflow Answer nodes put files into the answer text as Markdown links
(`![…](/files/…)`, `[name](/files/tools/….bin?…)`) instead of sending file events.
`FileLinks` takes those out of the streamed text as it arrives, holding back a link until it
is complete, so the raw link is never shown.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from gateway.config import DifyApp
from gateway.files import disposition_filename, file_name, file_type, safe_name, usable_type
from gateway.platform import OutputFile

MAX_FILE_BYTES = 50 * 1024 * 1024
FETCH_TIMEOUT_S = 60.0
MAX_REDIRECTS = 3
MAX_HELD_CHARS = 2048  # a "link" still open after this much text is just a bracket

_SIGNATURE = frozenset({"timestamp", "nonce", "sign"})
# A Markdown link or image: [text](url) or ![alt](url), with an optional "title".
_LINK = re.compile(r'(!?)\[([^\[\]\n]*)\]\(\s*<?([^()\s<>]+)>?(?:\s+"[^"\n]*")?\s*\)')
# What a link that is not finished yet looks like at the end of the text (a lone "!" may
# become an image).
_OPEN_LINK = re.compile(r"(?:!?\[[^\[\]\n]*(?:\](?:\([^()\n]*)?)?|!)$")


class FileFetchFailed(Exception):
    """A file could not be fetched (network, status, size, time). Never holds the URL."""


def resolve(url: str, app: DifyApp) -> str:
    """`url` made absolute: root-relative links go to the app's files origin. "" when it
    is neither (nothing to fetch)."""
    url = url.strip()
    if url.startswith(("http://", "https://")):
        return url
    if url.startswith("/"):
        return app.files_origin + url
    return ""


def is_dify_file(url: str, app: DifyApp) -> bool:
    """Whether `url` is a file Dify serves: root-relative `/files/…`, a `/files/` URL on the
    app's origin, or any URL signed the way Dify signs file links."""
    if url.startswith("/files/"):
        return True
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return False
    if parse_qs(parts.query).keys() >= _SIGNATURE:
        return True
    origins = (app.files_origin, app.base_url.removesuffix("/v1"))
    return any(url.startswith(origin + "/files/") for origin in origins)


def file_key(url: str) -> str:
    """The same file named twice (each link signed anew) has one key: its path."""
    parts = urlsplit(url)
    return parts.path or url


def public_link(url: str, app: DifyApp) -> str | None:
    """`url` if it may go into the chat as a link: HTTPS, not a Dify file link, and not
    plainly an internal host."""
    if not url.startswith("https://") or is_dify_file(url, app) or _internal(url):
        return None
    return url


def may_fetch(url: str, app: DifyApp) -> bool:
    """Whether the gateway fetches `url`: a Dify file, or a public HTTPS file a tool linked.

    A tool may hand back any URL, so the gateway does not fetch plain HTTP or plainly
    internal hosts (loopback, private and link-local addresses, `localhost`) for it."""
    return is_dify_file(url, app) or public_link(url, app) is not None


def _internal(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if not host or host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


@dataclass(frozen=True, slots=True)
class Link:
    url: str
    text: str
    image: bool


class FileLinks:
    """Removes links to Dify files from streamed Markdown and reports them.

    `feed(delta)` returns the text that may be shown now; a trailing bracket that may still
    become a link is held back until it is complete (or plainly not a link). A removed image
    leaves nothing (nor the blank lines after it, when it stood on its own line); a removed
    file link leaves its text (the file itself follows)."""

    def __init__(self, is_file: Callable[[str], bool], resolve: Callable[[str], str] = str) -> None:
        self._is_file = is_file
        self._resolve = resolve  # links are reported absolute
        self._held = ""
        self._last = "\n"  # the last character released (the start counts as a new line)
        self._eat_breaks = False  # an image on its own line was removed at the very end
        self.links: list[Link] = []

    def feed(self, delta: str) -> str:
        text = self._held + delta
        if not text:
            return ""
        cut = len(text)
        if "[" in text[-MAX_HELD_CHARS:] or text.endswith("!"):
            tail = _OPEN_LINK.search(text, max(0, len(text) - MAX_HELD_CHARS))
            if tail is not None:
                cut = tail.start()
        self._held = text[cut:]
        return self._release(text[:cut])

    def flush(self) -> str:
        text, self._held = self._held, ""
        return self._release(text)

    def strip_all(self, text: str) -> str:
        """A whole text at once (a `message_replace`)."""
        self._last, self._eat_breaks = "\n", False
        return self._release(text)

    def _release(self, text: str) -> str:
        if self._eat_breaks:
            stripped = text.lstrip("\n")
            self._eat_breaks = not stripped
            text = stripped
        if "](" in text:
            text = self._strip(text)
        if text:
            self._last = text[-1]
        return text

    def _strip(self, text: str) -> str:
        out: list[str] = []
        pos = 0
        for match in _LINK.finditer(text):
            image, label, url = match.group(1) == "!", match.group(2), match.group(3)
            if not self._is_file(url):
                continue
            self.links.append(Link(self._resolve(url), label.strip(), image))
            out.append(text[pos : match.start()])
            pos = match.end()
            if not image:
                out.append(label)
                continue
            before = "".join(out)[-1:] or self._last
            if before == "\n":  # the image stood on its own line: so do the breaks after
                rest = text[pos:].lstrip("\n")
                self._eat_breaks = not rest
                pos = len(text) - len(rest)
        out.append(text[pos:])
        return "".join(out)


# --- fetching ------------------------------------------------------------------------------


def _name_from_url(url: str) -> str:
    return safe_name(unquote(urlsplit(url).path.rsplit("/", 1)[-1]), default="")


async def fetch(
    http: httpx.AsyncClient,
    url: str,
    *,
    name: str = "",
    mime_type: str = "",
    link: str | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    within_s: float = FETCH_TIMEOUT_S,
) -> OutputFile:
    """Download one file (bounded in size and time; redirects followed by hand, at most
    `MAX_REDIRECTS`), named and typed from what Dify said, the response and the bytes."""
    try:
        async with asyncio.timeout(within_s):
            data, headers = await _get(http, url, max_bytes)
    except TimeoutError:
        raise FileFetchFailed(f"no file within {within_s:.0f}s") from None
    declared = usable_type(mime_type) or headers.get("content-type", "")
    mime = file_type(data, declared)
    given = name or disposition_filename(headers.get("content-disposition", "")) or ""
    chosen = given or _name_from_url(url) or "file"
    return OutputFile(data, file_name(chosen, mime, keep_extension=True), mime, link)


async def _get(http: httpx.AsyncClient, url: str, max_bytes: int) -> tuple[bytes, httpx.Headers]:
    for _ in range(MAX_REDIRECTS + 1):
        try:
            async with http.stream("GET", url) as response:
                if response.is_redirect and "location" in response.headers:
                    url = str(response.url.join(response.headers["location"]))
                    continue
                if response.status_code != 200:
                    raise FileFetchFailed(f"HTTP {response.status_code}")
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > max_bytes:
                        raise FileFetchFailed(f"larger than {max_bytes} bytes")
                if not data:
                    raise FileFetchFailed("empty file")
                return bytes(data), response.headers
        except httpx.HTTPError as exc:
            # Never the URL in the message: it is signed, and may name an internal host.
            raise FileFetchFailed(type(exc).__name__) from None
    raise FileFetchFailed("too many redirects")
