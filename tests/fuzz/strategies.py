"""Hostile input, generated: JSON and XML documents built as text, so that they can be
anything a socket can carry: real field names next to random ones, values of the wrong type,
lone surrogates (escaped, and raw as the invalid UTF-8 they become), nesting thousands of
levels deep, huge arrays and strings, JSON inside JSON strings, and plain garbage bytes.

`mutated(template)` starts from a real payload and breaks a few of its fields, so the deep
paths of a parser (the ones only a well-formed message reaches) are fuzzed too.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from typing import Any

from hypothesis import strategies as st

SURROGATES = ("\ud800", "\udbff", "\udc00", "\udc80", "\udfff")
# Strings that mean something to some parser: types, ids, hosts, edge numbers.
MEANINGFUL = (
    "",
    " ",
    "0",
    "1",
    "2",
    "3",
    "-1",
    "true",
    "null",
    "text",
    "image",
    "file",
    "voice",
    "audio",
    "mixed",
    "stream",
    "event",
    "post",
    "richText",
    "picture",
    "video",
    "p2p",
    "group",
    "single",
    "im",
    "message",
    "app_mention",
    "event_callback",
    "url_verification",
    "im.message.receive_v1",
    "enter_chat",
    "feedback_event",
    "template_card_event",
    "disconnected_event",
    "CALLBACK",
    "SYSTEM",
    "EVENT",
    "ping",
    "disconnect",
    "/v1.0/im/bot/messages/get",
    "aibot_msg_callback",
    "aibot_event_callback",
    "@_user_1",
    "@_all",
    "<@UBOT> hi",
    '<at user_id="ou_bot">Bot</at> hi',
    "ou_bot",
    "UBOT",
    "2.0",
    "https://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:1/x",
    "https://qyapi.weixin.qq.com/cgi-bin/aibot/response?response_code=x",
    "https://oapi.dingtalk.com/robot/sendBySession?session=x",
    "x" * 300,
    "\u202e\u0000\ufeff",
)


def texts(max_size: int = 24) -> st.SearchStrategy[str]:
    """Any string, lone surrogates included (hypothesis leaves those out by default)."""
    chars = st.characters(exclude_categories=()) | st.sampled_from(SURROGATES)
    return st.text(chars, max_size=max_size)


def encode(document: str) -> bytes:
    """A document's bytes: raw lone surrogates become the invalid UTF-8 they are on a wire."""
    return document.encode("utf-8", "surrogatepass")


def _literal(value: str, ascii_only: bool) -> str:
    # ensure_ascii escapes a lone surrogate as \\udXXX; without it, it stays raw.
    return json.dumps(value, ensure_ascii=ascii_only)


# --- JSON ------------------------------------------------------------------------------------


def _deep(n: int, kind: int) -> str:
    if kind == 0:
        return "[" * n + "]" * n
    if kind == 1:
        return '{"a":' * n + "1" + "}" * n
    if kind == 2:
        return "[" * n  # never closed
    return '{"event":' * n + "{}" + "}" * n


DEEP = st.builds(_deep, st.integers(2, 3000), st.integers(0, 3))
HUGE = st.one_of(
    st.integers(1000, 60_000).map(lambda n: "[" + ",".join(["0"] * n) + "]"),
    st.integers(1000, 200_000).map(lambda n: json.dumps("a" * n)),
    st.integers(100, 5000).map(lambda n: "{" + ",".join(f'"k{i}":{i}' for i in range(n)) + "}"),
)
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["-0", "1e400", "-1e400", "1.5e-400", "9" * 40, "1E2", "0.0", "-9.5"]),
)


def json_documents(
    names: Sequence[str], values: Sequence[str] = (), max_leaves: int = 10
) -> st.SearchStrategy[str]:
    """JSON text (mostly valid, sometimes not quite): objects keyed by the real field
    `names` or random keys, holding scalars, `values`, deep or huge structures, JSON in
    strings, and more of the same."""
    keys = st.sampled_from(tuple(names)) | texts(10)
    strings = st.sampled_from(tuple(values) + MEANINGFUL + tuple(names)) | texts()
    scalars = st.one_of(
        st.sampled_from(["null", "true", "false", "{}", "[]"]),
        NUMBERS,
        st.builds(_literal, strings, st.booleans()),
    )
    inner = st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
            | st.lists(st.tuples(keys, children), max_size=5).map(_object)
        ),
        max_leaves=4,
    )
    json_in_string = st.builds(_literal, inner | DEEP, st.booleans())

    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        arrays = st.lists(children, max_size=6).map(lambda xs: "[" + ",".join(xs) + "]")
        return arrays | st.lists(st.tuples(keys, children), max_size=8).map(_object)

    leaves = st.one_of(scalars, json_in_string, DEEP, HUGE)
    return st.recursive(leaves, extend, max_leaves=max_leaves)


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{_literal(k, True)}:{v}" for k, v in pairs) + "}"


class Raw(str):
    """A piece of JSON text put into a template as is."""


def dump(value: Any) -> str:
    """A template (dicts, lists, scalars, `Raw` text) as JSON text."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_literal(k, True)}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from _paths(child, (*prefix, index))


def _parent(document: Any, path: tuple[Any, ...]) -> Any:
    node = document
    for step in path[:-1]:
        in_dict = isinstance(node, dict) and step in node
        in_list = isinstance(node, list) and isinstance(step, int) and step < len(node)
        if not (in_dict or in_list):
            return None
        node = node[step]
    return node if isinstance(node, dict | list) else None


def mutated(
    template: dict[str, Any], names: Sequence[str], values: Sequence[str] = ()
) -> st.SearchStrategy[str]:
    """`template` as JSON text with up to four of its fields replaced by any JSON (of the
    wrong type, deep, huge, …), deleted, or joined by random keys."""
    paths = st.sampled_from(list(_paths(template)) or [("x",)])
    replacement = json_documents(names, values, max_leaves=4)
    new_keys = st.sampled_from(tuple(names)) | texts(8)
    return _mutate(template, paths, replacement, new_keys)


@st.composite
def _mutate(
    draw: st.DrawFn,
    template: dict[str, Any],
    paths: st.SearchStrategy[tuple[Any, ...]],
    replacement: st.SearchStrategy[str],
    new_keys: st.SearchStrategy[str],
) -> str:
    document = copy.deepcopy(template)
    for _ in range(draw(st.integers(0, 4))):
        path = draw(paths)
        parent = _parent(document, path)
        if parent is None:
            continue
        key = path[-1]
        present = key in parent if isinstance(parent, dict) else key < len(parent)
        action = draw(st.sampled_from(("replace", "replace", "delete", "add")))
        if action == "replace" and present:
            parent[key] = Raw(draw(replacement))
        elif action == "delete" and present:
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(new_keys)] = Raw(draw(replacement))
    return dump(document)


def field_names(*templates: Any) -> list[str]:
    """Every key in the templates (the real field names a parser looks up)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                found.add(key)
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)

    for template in templates:
        walk(template)
    return sorted(found)


def json_bodies(
    templates: Sequence[dict[str, Any]], values: Sequence[str] = ()
) -> st.SearchStrategy[bytes]:
    """Bodies a JSON endpoint may get: broken real payloads, random JSON with the real
    field names, and bytes that are not JSON at all."""
    names = field_names(*templates)
    documents = st.one_of(
        st.one_of([mutated(t, names, values) for t in templates]),
        json_documents(names, values),
    )
    return st.one_of(documents.map(encode), garbage())


def garbage() -> st.SearchStrategy[bytes]:
    """Bytes that are no format at all, or nearly one."""
    return st.one_of(
        st.binary(max_size=300),
        texts(60).map(encode),
        st.sampled_from([b"", b"{", b"[" * 100_000, b"\xff\xfe{\x00}\x00", b'{"a":"\\ud800"}']),
    )


# --- XML -------------------------------------------------------------------------------------

_XML_NASTIES = (
    '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]><xml>&b;</xml>',
    '<?xml version="1.0"?><!DOCTYPE x SYSTEM "file:///etc/passwd"><xml>&x;</xml>',
    '<?xml version="1.0" encoding="klingon"?><xml/>',
    '<?xml version="1.0" encoding="utf-16"?><xml/>',
    "<xml>" + "<a>" * 5000 + "</a>" * 5000 + "</xml>",
    "<xml>" + "<a/>" * 5000 + "</xml>",
    "<xml><![CDATA[" + "x" * 100_000 + "]]></xml>",
    "<xml><Content>&#xD800;</Content></xml>",
    "<xml><Content>&#0;</Content></xml>",
    "<notxml/>",
    "<xml>",
)


def _element(tag: str, content: str, cdata: bool) -> str:
    return f"<{tag}><![CDATA[{content}]]></{tag}>" if cdata else f"<{tag}>{content}</{tag}>"


def xml_documents(names: Sequence[str], values: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """XML text: a root (usually `<xml>`) of elements named like the real fields or not,
    holding real or random text, nested elements, entities and DTDs."""
    tags = st.sampled_from(tuple(names)) | st.from_regex(
        r"[A-Za-z_][A-Za-z0-9_.-]{0,8}", fullmatch=True
    )
    content = st.sampled_from(tuple(values) + MEANINGFUL) | texts().map(
        lambda s: s.replace("]]>", "")
    )
    leaf = st.builds(_element, tags, content, st.booleans())
    nodes = st.recursive(
        leaf,
        lambda children: st.builds(
            lambda tag, kids: f"<{tag}>{''.join(kids)}</{tag}>",
            tags,
            st.lists(children, max_size=4),
        ),
        max_leaves=20,
    )
    root = st.sampled_from(("xml", "xml", "xml", "root"))
    documents = st.builds(
        lambda r, kids: f"<{r}>{''.join(kids)}</{r}>", root, st.lists(nodes, max_size=12)
    )
    return documents | st.sampled_from(_XML_NASTIES)


def xml_fields(document: str) -> list[tuple[str, str]]:
    """The direct children of a flat XML document as (tag, inner XML text)."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(document)
    fields = []
    for child in root:
        inner = (child.text or "") + "".join(ET.tostring(c, encoding="unicode") for c in child)
        fields.append((child.tag, inner))
    return fields


def xml_mutated(
    fields: list[tuple[str, str]], names: Sequence[str], values: Sequence[str]
) -> st.SearchStrategy[str]:
    """A real callback's fields with a few replaced (text, CDATA, elements, markup), dropped,
    duplicated or joined by others."""
    content = st.sampled_from(tuple(values) + MEANINGFUL) | texts().map(
        lambda s: s.replace("]]>", "")
    )
    return _xml_mutate(fields, content, xml_documents(names, values), st.sampled_from(names))


@st.composite
def _xml_mutate(
    draw: st.DrawFn,
    fields: list[tuple[str, str]],
    content: st.SearchStrategy[str],
    markup: st.SearchStrategy[str],
    tags: st.SearchStrategy[str],
) -> str:
    out = list(fields)
    for _ in range(draw(st.integers(0, 4))):
        if not out:
            break
        index = draw(st.integers(0, len(out) - 1))
        action = draw(st.sampled_from(("text", "cdata", "nested", "drop", "twice", "add")))
        tag, inner = out[index]
        if action == "text":
            out[index] = (tag, draw(content).replace("&", "&amp;").replace("<", "&lt;"))
        elif action == "cdata":
            out[index] = (tag, f"<![CDATA[{draw(content)}]]>")
        elif action == "nested":
            out[index] = (tag, draw(markup))
        elif action == "drop":
            del out[index]
        elif action == "twice":
            out.insert(index, (tag, inner))
        else:
            out.insert(index, (draw(tags), f"<![CDATA[{draw(content)}]]>"))
    return "<xml>" + "".join(f"<{tag}>{inner}</{tag}>" for tag, inner in out) + "</xml>"


def headers_or_query(
    names: Sequence[str], values: st.SearchStrategy[str]
) -> st.SearchStrategy[dict[str, str]]:
    """Request headers or query parameters: usually every one a verifier reads (so that it
    gets past "missing", to the body), sometimes only some."""
    return st.one_of(
        st.fixed_dictionaries({name: values for name in names}),
        st.dictionaries(st.sampled_from(tuple(names)), values),
    )
