"""WeCom callback crypto (WXBizMsgCrypt), shared by both WeCom adapters.

Used by the self-built app adapter (`adapters/wecom/adapter.py`, receiveid = the corp
id, XML callbacks) AND by the AI-bot adapter (`wecom_bot`, receiveid = "", JSON callbacks).
Change the API only by adding to it.

The scheme, as defined by the official doc "加解密方案说明"
(https://developer.work.weixin.qq.com/document/path/91144):

- `msg_signature` = hex(SHA1(concat(sorted([token, timestamp, nonce, encrypt])))).
- AES key = base64decode(EncodingAESKey + "="), 32 bytes; AES-256-CBC with IV = key[:16].
- Plaintext = random(16) ‖ msg_len (4 bytes, big-endian) ‖ msg ‖ receiveid, padded with
  PKCS#7 to a multiple of **32** bytes (pad 1..32). A 16-byte unpadder (the AES block size,
  and what `cryptography`'s PKCS7(128) does) rejects about half of real messages: the
  official sample has pad 30.

CBC has no integrity check of its own: the signature is what authenticates a callback, so
`verify` must run before `decrypt`, and `decrypt` still fails closed on every malformed
field (base64, padding, length, receiveid).

The signature covers the timestamp, so a callback is only as fresh as its timestamp says:
`check_timestamp` refuses one older (or further ahead) than the bot's window, and within the
window the dedupe on the message id catches a replay.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.platform import VerificationFailed

BLOCK = 32  # WeCom's PKCS#7 block size, not AES's 16
_RANDOM_LEN = 16
_LEN_FIELD = 4


def pkcs7_pad(data: bytes, block: int = BLOCK) -> bytes:
    """Pad to a multiple of `block` bytes; a full block of padding when already aligned."""
    pad = block - len(data) % block
    return data + bytes([pad]) * pad


def pkcs7_unpad(data: bytes, block: int = BLOCK) -> bytes:
    """Strip PKCS#7 padding of 1..`block` bytes, all equal. Raises `VerificationFailed`."""
    if not data or len(data) % 16:
        raise VerificationFailed("wecom: ciphertext is not whole AES blocks")
    pad = data[-1]
    if not 1 <= pad <= block or pad > len(data):
        raise VerificationFailed("wecom: bad padding")
    if not hmac.compare_digest(data[-pad:], bytes([pad]) * pad):
        raise VerificationFailed("wecom: bad padding")
    return data[:-pad]


def check_timestamp(timestamp: str, now: float, max_age_s: float) -> None:
    """Raise `VerificationFailed` unless `timestamp` (Unix seconds, as WeCom sends it in the
    query) is within `max_age_s` of `now`, either way."""
    # ASCII digits only, bounded: int() would take " 12", "+12", fullwidth digits, huge runs.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise VerificationFailed("wecom: malformed timestamp")
    if abs(now - int(timestamp)) > max_age_s:
        raise VerificationFailed("wecom: stale timestamp")


def _utf8(value: str) -> bytes:
    # Query values come decoded from the edge; a lone surrogate must not raise here.
    return value.encode("utf-8", "surrogatepass")


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key from the 43-character EncodingAESKey of the WeCom console."""
    if len(encoding_aes_key) != 43:
        raise ValueError("EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("EncodingAESKey is not base64") from None
    if len(key) != 32:
        raise ValueError("EncodingAESKey must decode to 32 bytes")
    return key


def aes_cbc_decrypt(key: bytes, ciphertext: bytes) -> bytes:
    """AES-256-CBC with IV = key[:16], then the 32-byte PKCS#7 unpad. WeCom uses this for
    callbacks and (AI bot) for downloaded media encrypted with a per-URL `aeskey`."""
    if not ciphertext or len(ciphertext) % 16:
        raise VerificationFailed("wecom: ciphertext is not whole AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    return pkcs7_unpad(decryptor.update(ciphertext) + decryptor.finalize())


def aes_cbc_encrypt(key: bytes, plaintext: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return encryptor.update(pkcs7_pad(plaintext)) + encryptor.finalize()


class WecomCrypto:
    """Sign, verify, encrypt and decrypt WeCom callbacks for one receiveid.

    `receive_id` is the corp id for self-built apps and "" for the AI bot (doc path/101033).
    Every failure raises `VerificationFailed` (answered 401) with a message that names the
    check, never a secret.
    """

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        self._token = token
        self._key = aes_key(encoding_aes_key)
        self._receive_id = receive_id.encode("utf-8")

    def signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """sha1 hex of the lexicographically sorted [token, timestamp, nonce, encrypt]."""
        parts = sorted([self._token, timestamp, nonce, encrypt])
        return hashlib.sha1(b"".join(_utf8(p) for p in parts)).hexdigest()

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> None:
        """Check `msg_signature` in constant time. Raises `VerificationFailed`."""
        expected = self.signature(timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected.encode(), _utf8(msg_signature)):
            raise VerificationFailed("wecom: msg_signature does not match")

    def decrypt(self, encrypt: str) -> bytes:
        """The `msg` bytes of an `Encrypt`/`echostr` value whose receiveid is ours."""
        try:
            ciphertext = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError):
            raise VerificationFailed("wecom: Encrypt is not base64") from None
        plain = aes_cbc_decrypt(self._key, ciphertext)
        if len(plain) < _RANDOM_LEN + _LEN_FIELD:
            raise VerificationFailed("wecom: decrypted message too short")
        (length,) = struct.unpack(">I", plain[_RANDOM_LEN : _RANDOM_LEN + _LEN_FIELD])
        start = _RANDOM_LEN + _LEN_FIELD
        if length > len(plain) - start:
            raise VerificationFailed("wecom: message length out of range")
        receive_id = plain[start + length :]
        if not hmac.compare_digest(receive_id, self._receive_id):
            raise VerificationFailed("wecom: receiveid does not match")
        return plain[start : start + length]

    def encrypt(self, plaintext: bytes, random16: bytes | None = None) -> str:
        """base64 of AES-CBC(random16 ‖ len ‖ plaintext ‖ receiveid), padded to 32 bytes.
        `random16` is fixed only in tests (known-answer vectors)."""
        prefix = os.urandom(_RANDOM_LEN) if random16 is None else random16
        if len(prefix) != _RANDOM_LEN:
            raise ValueError("random16 must be 16 bytes")
        body = prefix + struct.pack(">I", len(plaintext)) + plaintext + self._receive_id
        return base64.b64encode(aes_cbc_encrypt(self._key, body)).decode("ascii")

    def encrypt_reply(self, plaintext: bytes, timestamp: str, nonce: str) -> tuple[str, str]:
        """(encrypt, msg_signature) for a passive reply signed over its own timestamp and
        nonce."""
        encrypted = self.encrypt(plaintext)
        return encrypted, self.signature(timestamp, nonce, encrypted)

    def verify_and_decrypt(
        self, msg_signature: str, timestamp: str, nonce: str, encrypt: str
    ) -> bytes:
        """`verify` then `decrypt`: the order every callback handler needs."""
        self.verify(msg_signature, timestamp, nonce, encrypt)
        return self.decrypt(encrypt)
