"""docs/web.md shows an embedding site how to mint a token in five lines: they must work."""

from __future__ import annotations

import re
import time
from pathlib import Path

from adapters.web.verify import WebUser, verify_token
from tests.fakes.web import SECRET

DOC = Path(__file__).parents[3] / "docs" / "web.md"


def test_the_five_line_token_example_mints_tokens_the_gateway_accepts() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1
    lines = [line for line in blocks[0].splitlines() if line.strip()]
    assert len(lines) == 5 + 1  # and the import
    namespace: dict[str, object] = {}
    exec(blocks[0], namespace)
    chat_token = namespace["chat_token"]
    token = chat_token("u-42", "Ada", SECRET)  # type: ignore[operator]
    assert verify_token(SECRET.encode(), token, time.time()) == WebUser("u-42", "Ada")
