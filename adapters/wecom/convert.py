"""WeCom self-built app callbacks: XML in, `InboundMessage` (or an ignore reason) out.

The outer envelope (doc "接收消息与事件"; crypto doc path/91144) is
`<xml><ToUserName/><Encrypt/><AgentID/></xml>`; the decrypted payload is an `<xml>` of
message fields (docs "消息格式" and "事件格式", same section).

Every XML document goes through defusedxml with DTDs, entities and external references
refused: a billion-laughs or XXE body is rejected at its `<!DOCTYPE`, before anything is
expanded or fetched, and the edge answers 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from gateway.models import Attachment, ChatType, InboundMessage
from gateway.platform import MalformedRequest
from gateway.words import Words

PLATFORM = "wecom"
# A real envelope is a few KB (an encrypted 2 KB message is ~3 KB of base64). Refusing big
# bodies before parsing bounds the parser's work to milliseconds, whatever the shape.
MAX_CALLBACK_BYTES = 256 * 1024
MAX_DEPTH = 6  # <xml> plus the deepest event payloads (<SendPicsInfo><PicList><item>…)
MAX_ELEMENTS = 1000

# WeCom voice messages are AMR (the callback's `Format`); Dify's audio-to-text accepts
# `audio/amr` (docs.dify.ai, "Convert Audio to Text").
_VOICE_MIME = {"amr": "audio/amr", "speex": "audio/speex"}


@dataclass(frozen=True, slots=True)
class Envelope:
    """The unauthenticated outer XML: only `encrypt` is trusted, once verified."""

    encrypt: str
    agent_id: str


class _Refused(Exception):
    pass


class _FlatFields:
    """A parser target that keeps the direct children of the root as {tag: text}.

    WeCom's XML is flat except for a few events that nest a level or two (batch job
    results, template card selections), so deeper nesting or a flood of elements is
    refused at the first offending tag: the work stays proportional to what a real
    callback needs, never to what an attacker sends (ElementTree would build it all)."""

    def __init__(self) -> None:
        self.root = ""
        self.fields: dict[str, str] = {}
        self._depth = 0
        self._elements = 0
        self._tag = ""
        self._text: list[str] = []

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self._depth += 1
        self._elements += 1
        if self._depth > MAX_DEPTH or self._elements > MAX_ELEMENTS:
            raise _Refused("too deep or too many elements")
        if self._depth == 1:
            self.root = tag
        elif self._depth == 2:
            self._tag, self._text = tag, []

    def data(self, text: str) -> None:
        if self._depth == 2:
            self._text.append(text)

    def end(self, tag: str) -> None:
        if self._depth == 2:
            self.fields[self._tag] = "".join(self._text)
        self._depth -= 1

    def close(self) -> dict[str, str]:
        return self.fields


def parse_xml(body: bytes) -> dict[str, str]:
    """A flat `<xml>` document as {tag: text}. Raises `MalformedRequest` for anything that
    is not one: not XML, a DTD (billion laughs), entities, external references (XXE),
    deep nesting or floods of elements, an encoding Python does not know (expat raises
    LookupError for those)."""
    if len(body) > MAX_CALLBACK_BYTES:
        raise MalformedRequest(f"wecom: callback body over {MAX_CALLBACK_BYTES} bytes")
    target = _FlatFields()
    parser = DefusedXMLParser(
        target=target, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    try:
        parser.feed(body)
        parser.close()
    except (_Refused, ParseError, DefusedXmlException, ValueError, LookupError) as exc:
        reason = type(exc).__name__
        raise MalformedRequest(f"wecom: body is not acceptable XML ({reason})") from None
    if target.root != "xml":
        raise MalformedRequest("wecom: the XML root is not <xml>")
    return target.fields


def parse_envelope(body: bytes) -> Envelope:
    fields = parse_xml(body)
    encrypt = fields.get("Encrypt", "").strip()
    if not encrypt:
        raise MalformedRequest("wecom: callback without <Encrypt>")
    return Envelope(encrypt=encrypt, agent_id=fields.get("AgentID", "").strip())


def dedupe_key(fields: dict[str, str]) -> str:
    """`msg:<MsgId>` for messages; events carry no id, so WeCom's advice is to dedupe them
    on FromUserName + CreateTime; the event name keeps two events of one second apart."""
    msg_id = fields.get("MsgId", "").strip()
    if msg_id:
        return f"msg:{msg_id}"
    user, created, event = (fields.get(k, "") for k in ("FromUserName", "CreateTime", "Event"))
    return f"event:{user}:{created}:{event}"


def to_message(
    fields: dict[str, str], *, bot: str, agent_id: int, received_at: float, words: Words
) -> InboundMessage | str:
    """The message to answer, or the reason to ignore the callback (acked with 200).
    `words` say what the bot cannot read."""
    callback_agent = fields.get("AgentID", "").strip()
    if callback_agent and callback_agent != str(agent_id):
        # Two apps sharing one callback URL and key: answer only our own app's users.
        return f"callback for agent {callback_agent}, not ours"
    msg_type = fields.get("MsgType", "").strip()
    user = fields.get("FromUserName", "").strip()
    if msg_type == "event":
        return f"event {fields.get('Event', '').strip() or 'unknown'}"
    if not user or not msg_type:
        return "callback without FromUserName or MsgType"
    message_id = fields.get("MsgId", "").strip() or f"{user}:{fields.get('CreateTime', '')}"
    text, notice = "", None
    attachments: tuple[Attachment, ...] = ()
    media_id = fields.get("MediaId", "").strip()
    if msg_type == "text":
        text = fields.get("Content", "")
    elif msg_type == "image" and media_id:
        attachments = (
            Attachment(kind="image", name=f"image-{message_id}.jpg", source={"media_id": media_id}),
        )
    elif msg_type == "voice" and media_id:
        fmt = fields.get("Format", "").strip().lower()
        fmt = fmt if fmt.isalnum() else "amr"
        attachments = (
            Attachment(
                kind="audio",
                name=f"voice-{message_id}.{fmt}",
                mime_type=_VOICE_MIME.get(fmt, f"audio/{fmt}"),
                source={"media_id": media_id},
            ),
        )
    else:
        notice = words.only_text_images_voice
    return InboundMessage(
        bot=bot,
        platform=PLATFORM,
        event_id=message_id,
        message_id=message_id,
        chat_id=user,  # apps only talk 1:1, so the member is the chat
        chat_type=ChatType.DIRECT,
        user_id=user,
        text=text,
        attachments=attachments,
        dedupe_keys=(dedupe_key(fields),),
        notice=notice,
        reply_to={"touser": user},
        received_at=received_at,
    )
