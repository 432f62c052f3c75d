"""The deployment files that ship with the project: docker-compose.yml (checked against the
Compose Specification's schema), the Kubernetes manifests (checked against Kubernetes' own
schemas, strictly) and the Dockerfile. Docker and a cluster are not needed; nginx's config
is run for real in tests/integration/test_deployment.py."""

from __future__ import annotations

import copy
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import ConfigError, ServerConfig, parse_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
# The oldest and the newest Kubernetes the validator has schemas for.
K8S_VERSIONS = ("1.25", "latest")


def validator(module: str) -> Any:
    """The validator's module, or a skip outside CI (the dev extras install it)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {module} (the dev extras install it)")
        pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")


# --- docker-compose.yml --------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def compose_spec_errors(tree: dict[str, Any], tmp_path: Path) -> str:
    """Errors of check-jsonschema against its copy of the Compose Specification schema
    (empty when valid)."""
    validator("check_jsonschema")
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(tree))
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema"]
    result = subprocess.run(
        [*command, "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return "" if result.returncode == 0 else result.stdout + result.stderr


def test_compose_file_follows_the_compose_spec(tmp_path: Path) -> None:
    assert compose_spec_errors(compose(), tmp_path) == ""


def test_compose_spec_check_catches_a_wrong_key(tmp_path: Path) -> None:
    tree = compose()
    tree["services"]["gateway"]["deploy"] = {"replica": 2}
    assert "replica" in compose_spec_errors(tree, tmp_path)


def test_compose_redis_fsyncs_every_write_to_a_volume() -> None:
    redis = compose()["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_compose_gateways_scale_behind_nginx_the_only_published_port() -> None:
    services = compose()["services"]
    gateway, nginx = services["gateway"], services["nginx"]
    assert gateway["deploy"]["replicas"] >= 2
    # A fixed host port on the gateway would make `--scale gateway=3` fail.
    assert [name for name, s in services.items() if "ports" in s] == ["nginx"]
    assert gateway["environment"]["GATEWAY_STORE"].startswith("redis://redis:")
    grace = ServerConfig().shutdown_grace_s
    assert int(gateway["stop_grace_period"].removesuffix("s")) > grace
    assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    # nginx's upstream is the gateway service by its Docker DNS name, re-resolved.
    conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert re.search(r"^\s*server gateway:8080 resolve ", conf, flags=re.M)


# --- Kubernetes ------------------------------------------------------------------------------


def manifests() -> dict[str, dict[str, Any]]:
    """Every manifest in deploy/kubernetes/, by kind."""
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[doc["kind"]] = doc
    return found


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_follow_the_kubernetes_schemas(version: str) -> None:
    kv = validator("kubernetes_validate")
    wanted = str(kv.utils.latest_version()) if version == "latest" else version
    docs = manifests()
    assert set(docs) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    for doc in docs.values():
        kv.validate(doc, wanted, strict=True)


def test_kubernetes_schema_check_catches_a_wrong_key() -> None:
    kv = validator("kubernetes_validate")
    deployment = copy.deepcopy(manifests()["Deployment"])
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, "1.25", strict=True)


def gateway_yaml() -> dict[str, Any]:
    return dict(yaml.safe_load(manifests()["ConfigMap"]["data"]["gateway.yaml"]))


def test_kubernetes_configmap_is_a_gateway_config_with_secrets_from_the_environment() -> None:
    tree = gateway_yaml()
    env = {
        "GATEWAY_STORE": "redis://:pw@redis:6379/0",
        "DIFY_HELPDESK_KEY": "app-key",
        "SLACK_SIGNING_SECRET": "signing",
        "SLACK_BOT_TOKEN": "xoxb-1",
    }
    config = parse_config(tree, env=env)
    assert config.store == env["GATEWAY_STORE"]
    assert config.server.port == 8080
    # No secret is written in the file itself: without the environment, it names them.
    with pytest.raises(ConfigError) as missing:
        parse_config(tree, env={})
    assert {name for name in env if name in str(missing.value)} == set(env)


def test_kubernetes_deployment_drains_before_it_is_killed() -> None:
    docs = manifests()
    deployment, pod = docs["Deployment"], docs["Deployment"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert 2 <= deployment["spec"]["replicas"] <= 3
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    (sleep, seconds) = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep" and 2 <= int(seconds) <= 15
    grace = gateway_yaml()["server"]["shutdown_grace_s"]
    assert pod["spec"]["terminationGracePeriodSeconds"] > int(seconds) + grace
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The config comes from the ConfigMap, where the image looks for it; secrets from the
    # Secret, as environment variables.
    config_path = next(e["value"] for e in container["env"] if e["name"] == "DIFY_GATEWAY_CONFIG")
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert config_path == f"{mount['mountPath']}/gateway.yaml"
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert container["envFrom"] == [{"secretRef": {"name": "dify-gateway"}}]


def test_kubernetes_service_and_budget_select_the_gateway_pods() -> None:
    docs = manifests()
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert docs["Service"]["spec"]["selector"].items() <= labels.items()
    budget = docs["PodDisruptionBudget"]["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget.get("maxUnavailable") == 1 or budget.get("minAvailable") == 1
    (port,) = docs["Service"]["spec"]["ports"]
    assert port["targetPort"] == "http"


# --- Dockerfile --------------------------------------------------------------------------


def test_docker_image_installs_the_audio_extra_for_feishu_voice() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    steps = [line for line in dockerfile.splitlines() if line.startswith("RUN pip ")]
    # Built into the wheels, then installed from them: PyAV and its FFmpeg end up in the image.
    assert any("pip wheel" in s and '".[audio]"' in s for s in steps), steps
    assert any("pip install" in s and '"dify-gateway[audio]"' in s for s in steps), steps
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^audio = \["av>=\d+"\]', pyproject, flags=re.M)
