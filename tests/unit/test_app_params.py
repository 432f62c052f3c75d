"""What `/parameters` tells the gateway: upload settings in both shapes, the input form,
required inputs no route provides, and the cache."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.app_params import (
    AppParameters,
    UploadPolicy,
    dify_file_type,
    input_form,
    missing_inputs,
    opening_statement,
    required_inputs_not_provided,
    speech_to_text,
)
from gateway.config import parse_config
from gateway.dify import DifyClient
from gateway.emulator import DifyEmulator

MB = 1024 * 1024
SYSTEM = {"file_size_limit": 15, "image_file_size_limit": 10}


def test_file_types_by_extension() -> None:
    assert [dify_file_type(n) for n in ("a.PNG", "b.pdf", "c.mp3", "d.mov", "e.zip", "f")] == [
        "image",
        "document",
        "audio",
        "video",
        "custom",
        "custom",
    ]


def test_the_flat_shape() -> None:
    policy = UploadPolicy.of_app(
        {
            "file_upload": {
                "enabled": True,
                "allowed_file_types": ["image", "document"],
                "allowed_file_upload_methods": ["local_file"],
                "number_limits": 2,
            },
            "system_parameters": SYSTEM,
        }
    )
    assert policy.check("chart.png", 1000, 0) is None
    assert policy.check("notes.pdf", 14 * MB, 1) is None
    assert policy.check("notes.pdf", 16 * MB, 0) == ("too_large", 15)
    assert policy.check("big.png", 11 * MB, 0) == ("too_large", 10)
    assert policy.check("song.mp3", 10, 0) == ("refused", 0)
    assert policy.check("third.png", 10, 2) == ("too_many", 2)


def test_the_flat_shape_with_custom_extensions() -> None:
    upload = {
        "enabled": True,
        "allowed_file_types": ["custom"],
        "allowed_file_extensions": [".ZIP", "dwg"],
    }
    policy = UploadPolicy.of_app({"file_upload": upload})
    assert policy.check("plans.dwg", 10, 0) is None
    assert policy.check("archive.zip", 10, 0) is None
    assert policy.check("notes.txt", 10, 0) == ("refused", 0)


def test_only_images_in_the_flat_shape_and_remote_only_uploads() -> None:
    images = UploadPolicy.of_app({"file_upload": {"image": {"enabled": True, "number_limits": 3}}})
    assert images.check("x.jpg", 10, 0) is None and images.check("x.pdf", 10, 0) is not None
    remote = UploadPolicy.of_app(
        {
            "file_upload": {
                "enabled": True,
                "allowed_file_types": ["image"],
                "allowed_file_upload_methods": ["remote_url"],
            }
        }
    )
    assert remote.check("x.jpg", 10, 0) == ("refused", 0)


def test_the_per_type_shape() -> None:
    policy = UploadPolicy.of_app(
        {
            "file_upload": {
                "image": {"enabled": True, "number_limits": 3, "transfer_methods": ["local_file"]},
                "document": {"enabled": True, "number_limits": 5},
                "audio": {"enabled": False},
            }
        }
    )
    assert policy.check("a.png", 10, 0) is None and policy.check("b.docx", 10, 4) is None
    assert policy.check("c.wav", 10, 0) == ("refused", 0)
    assert policy.check("d.pdf", 10, 5) == ("too_many", 5)


@pytest.mark.parametrize(
    "upload",
    [{}, {"enabled": False}, {"image": {"enabled": False}}, {"document": {"enabled": False}}],
)
def test_uploads_off_refuse_every_file(upload: dict[str, Any]) -> None:
    assert UploadPolicy.of_app({"file_upload": upload}).check("a.png", 1, 0) == ("refused", 0)


def test_a_workflow_file_input() -> None:
    entry = {"type": "file", "allowed_file_types": ["document"], "variable": "doc"}
    policy = UploadPolicy.of_input(entry, {"document": 15})
    assert policy.check("a.pdf", 10, 0) is None
    assert policy.check("b.pdf", 10, 1) == ("too_many", 1)
    assert policy.check("c.png", 10, 0) == ("refused", 0)


FORM = [
    {"text-input": {"variable": "department", "label": "Dept", "required": True}},
    {"select": {"variable": "tone", "required": False, "options": ["a", "b"]}},
    {"file-list": {"variable": "docs", "required": True, "max_length": 3}},
    {"external_data_tool": {"variable": "ext", "required": True}},
    {"paragraph": {"variable": "query", "required": True}},
    "junk",
    {"number": {"label": "no variable"}},
]


def test_the_input_form_and_what_is_missing() -> None:
    form = input_form({"user_input_form": FORM})
    assert list(form) == ["department", "tone", "docs", "ext", "query"]
    assert form["docs"]["type"] == "file-list"
    assert missing_inputs({"user_input_form": FORM}, {"docs"}) == ["department", "query"]


def test_required_inputs_no_route_provides() -> None:
    tree = {
        "dify": {
            "apps": {
                "hr": {"api_key": "k", "mode": "workflow", "file_input": "docs"},
                "it": {"api_key": "k"},
            }
        },
        "bots": {
            "sl": {"platform": "slack", "app": "hr", "signing_secret": "s", "bot_token": "x"},
        },
        "routes": [
            {"match": {"bot": "sl"}, "inputs": {"tone": "{user_name}"}},
            {"match": {"chat": "C1"}, "app": "it", "inputs": {"department": "IT"}},
        ],
    }
    config = parse_config(tree, env={})
    params = {"user_input_form": FORM}
    # The workflow's message (query) and file (docs) variables the gateway fills itself.
    assert required_inputs_not_provided(params, config, "hr") == ["department"]
    assert required_inputs_not_provided(params, config, "it") == ["docs", "query"]


def test_opening_statement_and_speech_to_text() -> None:
    assert opening_statement({"opening_statement": "Hi"}) == "Hi"
    assert opening_statement({"opening_statement": "  "}) is None
    assert opening_statement({"opening_statement": None}) is None
    assert speech_to_text({}) and speech_to_text({"speech_to_text": {"enabled": True}})
    assert not speech_to_text({"speech_to_text": {"enabled": False}})


async def test_parameters_are_cached_and_a_failure_is_not_fatal(dify: DifyEmulator) -> None:
    clock = [0.0]
    tree = {"dify": {"apps": {"main": {"api_key": dify.api_key, "base_url": dify.base_url}}}}
    apps = parse_config(tree, env={}).dify.apps
    async with httpx.AsyncClient() as http:
        cache = AppParameters(DifyClient(http), apps, clock=lambda: clock[0])
        dify.opening_statement = "Hello"
        assert (await cache.get("main"))["opening_statement"] == "Hello"
        assert (await cache.get("main"))["opening_statement"] == "Hello"
        assert dify.parameter_calls == 1
        clock[0] = 301.0
        await cache.get("main")
        assert dify.parameter_calls == 2
        dify.api_key = "rotated"  # Dify now refuses: the last answer stays in use
        clock[0] = 700.0
        assert (await cache.get("main"))["opening_statement"] == "Hello"
