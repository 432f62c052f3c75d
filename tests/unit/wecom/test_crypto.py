"""Known-answer and negative tests for the shared WeCom crypto (WXBizMsgCrypt).

Vectors: the official sample (doc path/91144 and the official C#/PHP/Java samples), the
wechatpy test vectors (`tests/test_crypto.py`), and a self-generated AI-bot vector (receiveid
"", section C below).
"""

from __future__ import annotations

import base64
import struct

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from adapters.wecom.crypto import WecomCrypto, aes_key, pkcs7_pad, pkcs7_unpad
from gateway.platform import VerificationFailed

# --- A. the official sample ---------------------------------------------------------------
OFFICIAL_TOKEN = "QDG6eK"
OFFICIAL_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
OFFICIAL_CORP_ID = "wx5823bf96d3bd56c7"
GET_SIGNATURE = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
GET_TIMESTAMP = "1409659589"
GET_NONCE = "263014780"
GET_ECHOSTR = (
    "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
)
POST_SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
POST_TIMESTAMP = "1409659813"
POST_NONCE = "1372623149"
POST_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qczc"
    "dCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLj"
    "vd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMn"
    "vw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k"
    "22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2Yoy"
    "yH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)
POST_PLAINTEXT = (
    b"<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n"
    b"<FromUserName><![CDATA[mycreate]]></FromUserName>\n"
    b"<CreateTime>1409659813</CreateTime>\n"
    b"<MsgType><![CDATA[text]]></MsgType>\n"
    b"<Content><![CDATA[hello]]></Content>\n"
    b"<MsgId>4561255354251345929</MsgId>\n"
    b"<AgentID>218</AgentID>\n"
    b"</xml>"
)

# --- B. wechatpy ---------------------------------------------------------------------------
WP_TOKEN = "123456"
WP_AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
WP_CORP_ID = "wx49f0ab532d5d035a"
WP_ECHOSTR = (
    "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q=="
)
WP_ENCRYPT_PLAINTEXT = (
    b"<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n"
    b"<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n"
    b"<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n"
    b"<CreateTime>1411525903</CreateTime>\n</xml>"
)
WP_ENCRYPTED = (
    "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNc"
    "BqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY"
    "0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsV"
    "bwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAG"
    "VRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
)
WP_DECRYPT_ENCRYPT = (
    "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHC"
    "rsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpX"
    "aG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQi"
    "MS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQi"
    "pvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0="
)

# --- C. AI bot (receiveid "") --------------------------------------------------------------
BOT_PLAINTEXT = (
    b'{"msgid":"MSGID1","aibotid":"AIBOTID","chattype":"single","from":{"userid":"zhangsan"},'
    b'"response_url":"RESPONSEURL","msgtype":"text","text":{"content":"hello"}}'
)
BOT_ENCRYPT = (
    "y514aRT8yYkYNee3kPvkrCSi5felcUYDNHEcUVaUSFdsvW3KT5rgLXDDgP8Br2hMdsxfGTcg6pzfEDy6x4yI4HK+"
    "AaDCrbeZdnMs1+Q76/tO61deRABSD/7Bm0QwtF0kasdpZMq8IMfEQj9pcCo1PjT1G0ACLJcVeEd3akBP1koGvE3M"
    "UVRqi1rktHN81gm8GQVLlpkBW0KekVi/KwU3cAXy+NrQctfHuF+ib6IPOe/N94aZh2C6eQ/xLiSccbYl"
)


@pytest.fixture
def official() -> WecomCrypto:
    return WecomCrypto(OFFICIAL_TOKEN, OFFICIAL_AES_KEY, OFFICIAL_CORP_ID)


@pytest.fixture
def wechatpy() -> WecomCrypto:
    return WecomCrypto(WP_TOKEN, WP_AES_KEY, WP_CORP_ID)


def _raw_decrypt(key_text: str, encrypt: str) -> bytes:
    """AES-CBC without unpadding, to look at the padding bytes independently."""
    key = base64.b64decode(key_text + "=")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    return decryptor.update(base64.b64decode(encrypt)) + decryptor.finalize()


# --- known answers -------------------------------------------------------------------------


def test_official_get_echostr(official: WecomCrypto) -> None:
    assert official.signature(GET_TIMESTAMP, GET_NONCE, GET_ECHOSTR) == GET_SIGNATURE
    official.verify(GET_SIGNATURE, GET_TIMESTAMP, GET_NONCE, GET_ECHOSTR)
    assert official.decrypt(GET_ECHOSTR) == b"1616140317555161061"


def test_official_post_message_has_pad_30(official: WecomCrypto) -> None:
    official.verify(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)
    assert official.decrypt(POST_ENCRYPT) == POST_PLAINTEXT
    raw = _raw_decrypt(OFFICIAL_AES_KEY, POST_ENCRYPT)
    assert raw[-1] == 30 and raw[-30:] == bytes([30]) * 30


def test_official_post_rejected_by_a_16_byte_unpadder() -> None:
    """Why the block size matters: the standard AES unpadder refuses a real message."""
    unpadder = padding.PKCS7(128).unpadder()
    with pytest.raises(ValueError):
        unpadder.update(_raw_decrypt(OFFICIAL_AES_KEY, POST_ENCRYPT))
        unpadder.finalize()


def test_wechatpy_check_signature(wechatpy: WecomCrypto) -> None:
    wechatpy.verify(
        "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780", "437374425", WP_ECHOSTR
    )
    assert wechatpy.decrypt(WP_ECHOSTR) == b"5927782489442352469"


def test_wechatpy_check_signature_wrong_nonce(wechatpy: WecomCrypto) -> None:
    with pytest.raises(VerificationFailed):
        wechatpy.verify(
            "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780", "437374424", WP_ECHOSTR
        )


def test_wechatpy_encrypt_message_with_fixed_random(wechatpy: WecomCrypto) -> None:
    encrypted = wechatpy.encrypt(WP_ENCRYPT_PLAINTEXT, random16=b"1234567890123456")
    assert encrypted == WP_ENCRYPTED
    assert wechatpy.signature("1411525903", "461056294", encrypted) == (
        "407518b7649e86ef23978113f92d27afa9296533"
    )


def test_wechatpy_decrypt_message(wechatpy: WecomCrypto) -> None:
    wechatpy.verify(
        "74d92dfeb87ba7c714f89d98870ae5eb62dff26d", "1411525903", "461056294", WP_DECRYPT_ENCRYPT
    )
    plain = wechatpy.decrypt(WP_DECRYPT_ENCRYPT)
    assert b"<Content><![CDATA[test]]></Content>" in plain
    assert b"<FromUserName><![CDATA[messense]]></FromUserName>" in plain
    assert b"<MsgId>4363689963896700987</MsgId>" in plain
    assert b"<AgentID>1</AgentID>" in plain


def test_ai_bot_vector_with_empty_receiveid() -> None:
    bot = WecomCrypto(OFFICIAL_TOKEN, OFFICIAL_AES_KEY, "")
    assert bot.encrypt(BOT_PLAINTEXT, random16=b"1234567890123456") == BOT_ENCRYPT
    assert bot.signature("1700000000", "nonce1", BOT_ENCRYPT) == (
        "ae0c82895de8d90ffb0ab14e00cb501a874d625b"
    )
    assert (
        bot.verify_and_decrypt(
            "ae0c82895de8d90ffb0ab14e00cb501a874d625b", "1700000000", "nonce1", BOT_ENCRYPT
        )
        == BOT_PLAINTEXT
    )


def test_message_whose_pad_is_32(official: WecomCrypto) -> None:
    # 16 random + 4 length + 26 msg + 18 corp id = 64 bytes: aligned, so a full pad block.
    msg = b"abcdefghijklmnopqrstuvwxyz"
    assert (16 + 4 + len(msg) + len(OFFICIAL_CORP_ID)) % 32 == 0
    encrypted = official.encrypt(msg, random16=b"0123456789abcdef")
    raw = _raw_decrypt(OFFICIAL_AES_KEY, encrypted)
    assert len(raw) == 96 and raw[-32:] == bytes([32]) * 32
    assert official.decrypt(encrypted) == msg


def test_encrypt_reply_signs_its_own_timestamp_and_nonce(official: WecomCrypto) -> None:
    encrypted, signature = official.encrypt_reply(b"<xml>ok</xml>", "1700000001", "n2")
    official.verify(signature, "1700000001", "n2", encrypted)
    assert official.decrypt(encrypted) == b"<xml>ok</xml>"


@given(st.binary(max_size=200), st.binary(min_size=16, max_size=16), st.text(max_size=40))
def test_round_trip_any_length(msg: bytes, random16: bytes, receive_id: str) -> None:
    crypto = WecomCrypto(OFFICIAL_TOKEN, OFFICIAL_AES_KEY, receive_id)
    encrypted = crypto.encrypt(msg, random16=random16)
    assert len(base64.b64decode(encrypted)) % 32 == 0
    assert crypto.decrypt(encrypted) == msg


def test_encrypt_uses_fresh_randomness(official: WecomCrypto) -> None:
    assert official.encrypt(b"same") != official.encrypt(b"same")


# --- negative cases ------------------------------------------------------------------------


def test_bad_signature(official: WecomCrypto) -> None:
    wrong = "0" * 40
    with pytest.raises(VerificationFailed):
        official.verify(wrong, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)


@pytest.mark.parametrize(
    ("signature", "timestamp", "nonce", "encrypt"),
    [
        (POST_SIGNATURE.upper(), POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT),
        (POST_SIGNATURE, "1409659814", POST_NONCE, POST_ENCRYPT),
        (POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT[:-4] + "AAA="),
        ("", POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT),
        ("\u00e9" * 40, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT),
        ("\ud800" * 40, POST_TIMESTAMP, "\udfff", POST_ENCRYPT),
    ],
)
def test_signature_mismatches(
    official: WecomCrypto, signature: str, timestamp: str, nonce: str, encrypt: str
) -> None:
    with pytest.raises(VerificationFailed):
        official.verify(signature, timestamp, nonce, encrypt)


def test_wrong_token() -> None:
    other = WecomCrypto("other", OFFICIAL_AES_KEY, OFFICIAL_CORP_ID)
    with pytest.raises(VerificationFailed):
        other.verify(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)


def test_wrong_receiveid() -> None:
    other_corp = WecomCrypto(OFFICIAL_TOKEN, OFFICIAL_AES_KEY, "wx0000000000000000")
    with pytest.raises(VerificationFailed, match="receiveid"):
        other_corp.decrypt(POST_ENCRYPT)
    ai_bot = WecomCrypto(OFFICIAL_TOKEN, OFFICIAL_AES_KEY, "")
    with pytest.raises(VerificationFailed, match="receiveid"):
        ai_bot.decrypt(POST_ENCRYPT)  # an app callback replayed at an AI bot


def test_empty_receiveid_message_refused_by_an_app(official: WecomCrypto) -> None:
    with pytest.raises(VerificationFailed, match="receiveid"):
        official.decrypt(BOT_ENCRYPT)


def test_wrong_aes_key() -> None:
    other = WecomCrypto(OFFICIAL_TOKEN, WP_AES_KEY, OFFICIAL_CORP_ID)
    with pytest.raises(VerificationFailed):
        other.decrypt(POST_ENCRYPT)


@pytest.mark.parametrize("position", [0, 100, -40, -17, -1])
def test_tampered_ciphertext(official: WecomCrypto, position: int) -> None:
    data = bytearray(base64.b64decode(POST_ENCRYPT))
    data[position] ^= 0x01
    tampered = base64.b64encode(bytes(data)).decode()
    with pytest.raises(VerificationFailed):
        official.verify(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, tampered)
    if position < -16:
        # Flipping a bit of the second-to-last block flips the same bit of the padding:
        # decryption alone must notice it too.
        with pytest.raises(VerificationFailed):
            official.decrypt(tampered)


@pytest.mark.parametrize(
    "encrypt",
    [
        "",
        "not base64!",
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaq",
        base64.b64encode(b"x" * 15).decode(),
        base64.b64encode(b"x" * 33).decode(),
        "\u00e9\u00e9\u00e9\u00e9",
        GET_ECHOSTR.replace("+", " "),
    ],
)
def test_malformed_ciphertext(official: WecomCrypto, encrypt: str) -> None:
    with pytest.raises(VerificationFailed):
        official.decrypt(encrypt)


def _encrypt_raw(plain: bytes) -> str:
    """Encrypt arbitrary bytes (already padded) with the official key."""
    key = aes_key(OFFICIAL_AES_KEY)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


@pytest.mark.parametrize(
    "plain",
    [
        b"r" * 16 + struct.pack(">I", 5) + b"hello" + b"\x00" * 7,  # pad 0
        b"r" * 16 + struct.pack(">I", 5) + b"hello" + b"x" * 6 + b"\x21",  # pad 33
        b"r" * 16 + struct.pack(">I", 5) + b"hello" + b"\x03\x05\x05\x05\x05\x05\x05",  # unequal
        b"r" * 16 + struct.pack(">I", 500) + b"hello" + bytes([7]) * 7,  # length too large
        b"r" * 10 + bytes([22]) * 22,  # too short for random + length
    ],
)
def test_bad_padding_and_length(official: WecomCrypto, plain: bytes) -> None:
    assert len(plain) == 32
    with pytest.raises(VerificationFailed):
        official.decrypt(_encrypt_raw(plain))


def test_pkcs7_helpers() -> None:
    assert pkcs7_pad(b"") == bytes([32]) * 32
    assert pkcs7_pad(b"a" * 31) == b"a" * 31 + b"\x01"
    assert pkcs7_unpad(pkcs7_pad(b"a" * 40)) == b"a" * 40
    with pytest.raises(VerificationFailed):
        pkcs7_unpad(b"")


@pytest.mark.parametrize("key", ["", "short", OFFICIAL_AES_KEY + "A", "*" * 43])
def test_invalid_encoding_aes_key(key: str) -> None:
    with pytest.raises(ValueError):
        WecomCrypto("t", key, "corp")


def test_random16_must_be_16_bytes(official: WecomCrypto) -> None:
    with pytest.raises(ValueError):
        official.encrypt(b"x", random16=b"short")
