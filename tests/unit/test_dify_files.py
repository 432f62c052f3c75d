"""The app's files: links resolved, recognised and taken out of the text; downloads bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from gateway.config import DifyApp
from gateway.dify_files import (
    FileFetchFailed,
    FileLinks,
    Link,
    fetch,
    file_key,
    is_dify_file,
    may_fetch,
    public_link,
    resolve,
)

SIGNED = "timestamp=1&nonce=n&sign=s"


def app(**extra: Any) -> DifyApp:
    return DifyApp(base_url="https://dify.corp/v1", api_key="k", **extra)  # type: ignore[arg-type]


def test_relative_links_resolve_against_the_origin_or_files_base_url() -> None:
    assert resolve("/files/tools/a.png?x=1", app()) == "https://dify.corp/files/tools/a.png?x=1"
    other = app(files_base_url="http://files.internal:5001")
    assert resolve("/files/a.png", other) == "http://files.internal:5001/files/a.png"
    assert resolve("https://cdn.example/a.png", other) == "https://cdn.example/a.png"
    assert resolve("a.png", app()) == "" and resolve("javascript:x", app()) == ""
    # An API base behind a path keeps the path (only the /v1 goes).
    proxied = DifyApp(base_url="https://x.corp/dify/v1", api_key="k")  # type: ignore[arg-type]
    assert resolve("/files/a.png", proxied) == "https://x.corp/dify/files/a.png"


@pytest.mark.parametrize(
    ("url", "dify"),
    [
        ("/files/tools/a.png", True),
        ("https://dify.corp/files/tools/a.png", True),
        (f"https://other-host/files/x.png?{SIGNED}", True),
        ("https://cdn.example/a.png", False),
        ("https://dify.corp/docs/a.png", False),
        ("/static/a.png", False),
        ("ftp://dify.corp/files/a.png", False),
    ],
)
def test_dify_file_links_are_recognised(url: str, dify: bool) -> None:
    assert is_dify_file(url, app()) is dify
    assert (public_link(url, app()) is None) is (dify or not url.startswith("https://"))


def test_a_file_named_twice_has_one_key() -> None:
    assert file_key(f"https://d/files/tools/a.png?{SIGNED}") == file_key("/files/tools/a.png")


def test_links_split_across_chunks_are_held_until_complete() -> None:
    links = FileLinks(lambda url: url.startswith("/files/"), lambda url: "https://d" + url)
    shown = [
        links.feed(chunk)
        for chunk in ["See ![ch", "art](/files/a.png", ") and [the rep", "ort](/files/r.pdf)."]
    ]
    assert shown == ["See ", "", " and ", "the report."]
    assert links.links == [
        Link("https://d/files/a.png", "chart", True),
        Link("https://d/files/r.pdf", "the report", False),
    ]


def test_other_links_and_brackets_pass_through() -> None:
    links = FileLinks(lambda url: url.startswith("/files/"))
    text = "[1] see [docs](https://example.com) and ![x](https://cdn/x.png)! [unclosed"
    assert links.feed(text) + links.flush() == text
    assert links.links == []


def test_a_bracket_that_never_becomes_a_link_is_released() -> None:
    links = FileLinks(lambda url: True)
    assert links.feed("a [b") == "a "
    assert links.feed("]\nmore") == "[b]\nmore"


def test_an_image_on_its_own_line_leaves_no_gap() -> None:
    links = FileLinks(lambda url: url.startswith("/files/"))
    out = links.feed("Chart:\n\n![c](/files/a.png)") + links.feed("\n\nNext") + links.flush()
    assert out == "Chart:\n\nNext"
    inline = FileLinks(lambda url: url.startswith("/files/"))
    assert inline.strip_all("a ![c](/files/a.png) b") == "a  b"


# --- fetching ------------------------------------------------------------------------------


def serve(handler: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_a_file_is_named_and_typed_from_dify_the_response_and_its_bytes() -> None:
    png = b"\x89PNG\r\n\x1a\nxx"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=png, headers={"content-type": "application/octet-stream"}
        )

    async with serve(handler) as http:
        named = await fetch(http, "https://d/files/tools/abc.bin", name="chart")
        unnamed = await fetch(http, "https://d/files/tools/abc.png", link="https://cdn/x")
    assert (named.name, named.mime_type, named.data) == ("chart.png", "image/png", png)
    assert (unnamed.name, unnamed.link) == ("abc.png", "https://cdn/x")


async def test_redirects_are_followed_a_few_times() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        hop = int(request.url.params.get("hop", "0"))
        if hop < 2:
            return httpx.Response(302, headers={"location": f"/f?hop={hop + 1}"})
        return httpx.Response(200, content=b"%PDF-1.4", headers={"content-type": "application/pdf"})

    async with serve(handler) as http:
        file = await fetch(http, "https://d/f", name="r.pdf")
    assert file.data == b"%PDF-1.4"

    def loop(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "/again"})

    async with serve(loop) as http:
        with pytest.raises(FileFetchFailed, match="redirects"):
            await fetch(http, "https://d/f")


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(403, text="Request has expired."), "HTTP 403"),
        (httpx.Response(200, content=b""), "empty"),
        (httpx.Response(200, content=b"x" * 101), "larger than 100"),
    ],
)
async def test_bad_downloads_fail_without_the_url(response: httpx.Response, error: str) -> None:
    async with serve(lambda request: response) as http:
        with pytest.raises(FileFetchFailed, match=error) as info:
            await fetch(http, f"https://d/files/secret.png?{SIGNED}", max_bytes=100)
    assert "secret" not in str(info.value) and "sign" not in str(info.value)


async def test_a_slow_download_is_given_up() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(1.0)
        return httpx.Response(200, content=b"late")

    async with serve(slow) as http:
        with pytest.raises(FileFetchFailed, match="within"):
            await fetch(http, "https://d/f", within_s=0.1)


@pytest.mark.parametrize(
    ("url", "fetched"),
    [
        (f"http://dify.internal:5001/files/tools/a.png?{SIGNED}", True),  # Dify's own link
        ("/files/tools/a.png", True),
        ("https://cdn.example/a.png", True),
        ("http://cdn.example/a.png", False),
        ("https://127.0.0.1/a.png", False),
        ("https://10.1.2.3/a.png", False),
        ("https://169.254.169.254/latest/meta-data", False),
        ("https://localhost/a.png", False),
        ("https://minio.internal/a.png", False),
        ("https://[::1]/a.png", False),
    ],
)
def test_only_dify_files_and_public_https_files_are_fetched(url: str, fetched: bool) -> None:
    assert may_fetch(url, app()) is fetched
