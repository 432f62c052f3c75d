"""Feishu/Lark event encryption and request signatures.

Spec: https://open.feishu.cn/document/server-docs/event-subscription-guide/event-subscription-configure-/encrypt-key-encryption-configuration-case
(and lark-oapi `core/utils/decryptor.py`, `event/dispatcher_handler.py`):

- With an Encrypt Key configured, the body is `{"encrypt": base64(iv ‖ AES-256-CBC(json))}`,
  key = SHA-256(encrypt_key), iv = the first 16 bytes, PKCS#7 padding on 16-byte blocks.
  The SDK strips `pt[-1]` bytes without looking at them; we validate the padding, so a wrong
  key is rejected instead of producing garbage.
- `X-Lark-Signature = hex(SHA-256(timestamp + nonce + encrypt_key ‖ raw body))`: a plain
  digest, not an HMAC, over the exact body bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16


class DecryptError(Exception):
    """The payload is not valid base64, or does not decrypt with this key."""


def _key(encrypt_key: str) -> bytes:
    return hashlib.sha256(encrypt_key.encode("utf-8")).digest()


def decrypt(encrypt_key: str, encrypted: str) -> bytes:
    """The plaintext bytes of an `encrypt` field. Raises `DecryptError`."""
    try:
        raw = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecryptError("encrypt is not base64") from exc
    # At least the IV and one block, and whole blocks only.
    if len(raw) < 2 * BLOCK or len(raw) % BLOCK:
        raise DecryptError("encrypt has a bad length")
    decryptor = Cipher(algorithms.AES(_key(encrypt_key)), modes.CBC(raw[:BLOCK])).decryptor()
    padded = decryptor.update(raw[BLOCK:]) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= BLOCK or padded[-pad:] != bytes([pad]) * pad:
        raise DecryptError("bad padding (wrong encrypt key?)")
    return padded[:-pad]


def encrypt(encrypt_key: str, plaintext: bytes, iv: bytes | None = None) -> str:
    """The inverse of `decrypt`, as Feishu does it (tests and the demo send real events)."""
    iv = os.urandom(BLOCK) if iv is None else iv
    if len(iv) != BLOCK:
        raise ValueError("iv must be 16 bytes")
    pad = BLOCK - len(plaintext) % BLOCK
    encryptor = Cipher(algorithms.AES(_key(encrypt_key)), modes.CBC(iv)).encryptor()
    body = encryptor.update(plaintext + bytes([pad]) * pad) + encryptor.finalize()
    return base64.b64encode(iv + body).decode("ascii")


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """The `X-Lark-Signature` Feishu sends for this request."""
    prefix = (timestamp + nonce + encrypt_key).encode("utf-8")
    return hashlib.sha256(prefix + body).hexdigest()
