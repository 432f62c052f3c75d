"""The monitoring files that ship with the project: Prometheus alert rules and a Grafana
dashboard name only metrics the gateway exports, and docs/operating.md lists every metric."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.core import Metric

from gateway.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dify-gateway.json"
OPERATING = ROOT / "docs" / "operating.md"
# Prometheus's own series, which a rule may use besides the gateway's.
PROMETHEUS_OWN = frozenset({"up"})
METRIC_NAME = re.compile(r"\b(dify_gateway_[a-z0-9_]+)")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count")}


def families() -> list[Metric]:
    return list(Metrics().registry.collect())


def exported_names() -> set[str]:
    """Every series name the gateway exports, with the suffixes Prometheus sees."""
    names: set[str] = set()
    for family in families():
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
    return names


def series_in(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


def test_the_exported_names_are_what_the_files_are_checked_against() -> None:
    names = exported_names()
    assert {"dify_gateway_bot_up", "dify_gateway_reloads_total"} <= names
    assert "dify_gateway_first_update_seconds_bucket" in names
    assert series_in('rate(dify_gateway_x_total{a="b"}[5m]) / up') == {"dify_gateway_x_total"}


def test_alert_rules_are_valid_and_name_existing_metrics() -> None:
    tree = yaml.safe_load(ALERTS.read_text())
    rules = [rule for group in tree["groups"] for rule in group["rules"]]
    assert len(rules) >= 8
    names = exported_names()
    seen: set[str] = set()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"[A-Z][A-Za-z]+", rule["alert"]), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"])
        expr = rule["expr"]
        assert expr.count("(") == expr.count(")"), rule["alert"]
        used = series_in(expr)
        assert used or set(re.findall(r"[a-z_]+", expr)) & PROMETHEUS_OWN, rule["alert"]
        assert used <= names, f"{rule['alert']} names unknown metrics: {used - names}"
        seen |= used
    # The new signals each have an alert.
    for metric in (
        "dify_gateway_bot_up",
        "dify_gateway_first_update_seconds_bucket",
        "dify_gateway_platform_api_errors_total",
        "dify_gateway_reloads_total",
        "dify_gateway_oldest_queued_seconds",
    ):
        assert metric in seen


def test_an_alert_on_an_unknown_metric_would_be_caught() -> None:
    assert not series_in("rate(dify_gateway_no_such_thing_total[5m])") <= exported_names()


def dashboard_panels() -> list[dict[str, Any]]:
    return list(json.loads(DASHBOARD.read_text())["panels"])


def test_the_dashboard_is_valid_json_and_every_expr_names_existing_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] == "dify-gateway" and dashboard["uid"]
    names = exported_names()
    panels = dashboard_panels()
    assert len(panels) >= 10
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["title"] and panel["targets"], panel
        for target in panel["targets"]:
            used = series_in(target["expr"])
            assert used, f"{panel['title']}: no gateway metric in {target['expr']}"
            assert used <= names, f"{panel['title']} names unknown metrics: {used - names}"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "instance"} <= variables


def documented_metrics() -> dict[str, str]:
    """The "Metrics" section of docs/operating.md: name -> type."""
    text = OPERATING.read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(dify_gateway_[a-z0-9_]+)` \| (\w+) \|", section, re.MULTILINE)
    return dict(rows)


@pytest.mark.parametrize("family", families(), ids=lambda f: f.name)
def test_docs_list_every_metric_with_its_type(family: Metric) -> None:
    documented = documented_metrics()
    name = family.name + ("_total" if family.type == "counter" else "")
    assert name in documented, f"docs/operating.md does not list {name}"
    assert documented[name] == family.type
