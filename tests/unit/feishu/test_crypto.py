"""Known-answer vectors and negative cases: the decrypt example of Feishu's event-encryption
doc (`test key`, "hello world"), and self-generated vectors (an encrypted url_verification
with a fixed IV, and its signature)."""

from __future__ import annotations

import base64
import json

import pytest

from adapters.feishu.crypto import DecryptError, decrypt, encrypt, signature

OFFICIAL_ENCRYPT = "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="
CHALLENGE_PLAIN = b'{"challenge":"ajls384kdj","token":"xxxxxx","type":"url_verification"}'
CHALLENGE_ENCRYPT = (
    "MDEyMzQ1Njc4OWFiY2RlZtWk+9FBVdzQ4TLkjfEv5NMdDH8aS8GY4yM80uYktE+PRVyD+lzTep5KiLr9nogtT"
    "NPZpddsq4wsYVWvA1nyXUz16ROcWk/KybRQ2sh4f9Kc"
)
SIGNATURE = "eb00a66e7c20204754738876c800187a1e4d60c3f52e81a5fe3a3b854829781d"


def test_official_decrypt_vector() -> None:
    assert decrypt("test key", OFFICIAL_ENCRYPT) == b"hello world"


def test_self_generated_challenge_vector_both_ways() -> None:
    assert encrypt("test key", CHALLENGE_PLAIN, iv=b"0123456789abcdef") == CHALLENGE_ENCRYPT
    assert json.loads(decrypt("test key", CHALLENGE_ENCRYPT))["challenge"] == "ajls384kdj"


def test_self_generated_signature_vector() -> None:
    body = json.dumps({"encrypt": CHALLENGE_ENCRYPT}, separators=(",", ":")).encode()
    assert signature("1700000000", "abc123", "test key", body) == SIGNATURE


def test_signature_covers_every_input() -> None:
    body = b'{"encrypt":"x"}'
    base = signature("1700000000", "abc123", "test key", body)
    assert signature("1700000001", "abc123", "test key", body) != base
    assert signature("1700000000", "abc124", "test key", body) != base
    assert signature("1700000000", "abc123", "test kez", body) != base
    assert signature("1700000000", "abc123", "test key", body + b" ") != base


def test_wrong_key_is_rejected_not_garbled() -> None:
    # Validating the padding turns a wrong key into an error, not random bytes.
    with pytest.raises(DecryptError):
        decrypt("other key", CHALLENGE_ENCRYPT)


@pytest.mark.parametrize(
    "encrypted",
    [
        "not base64 at all!",
        base64.b64encode(b"0123456789abcdef").decode(),  # an IV and no block
        base64.b64encode(b"0123456789abcdef" + b"x" * 20).decode(),  # not whole blocks
        "",
    ],
)
def test_undecryptable_payloads(encrypted: str) -> None:
    with pytest.raises(DecryptError):
        decrypt("test key", encrypted)


def test_bad_padding_bytes_are_rejected() -> None:
    # A last byte of 3 whose two predecessors are not 3: PKCS#7 says reject.
    import hashlib

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = hashlib.sha256(b"test key").digest()
    iv = b"0123456789abcdef"
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    block = b"hello world!!" + b"\x01\x02\x03"
    raw = iv + enc.update(block) + enc.finalize()
    with pytest.raises(DecryptError):
        decrypt("test key", base64.b64encode(raw).decode())


def test_full_block_of_padding_round_trips() -> None:
    plain = b"x" * 32  # padding is a whole extra block of 16s
    assert decrypt("k", encrypt("k", plain)) == plain
