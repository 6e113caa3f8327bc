"""docs/grafana/flask-quota.json graphs exactly the metrics the code sends.

The dashboard reads statsd's Graphite layout with its default settings: counters as rates
``stats.<prefix>.<name>``, the timer as ``stats.timers.<prefix>.check.<aggregate>``, gauges as
``stats.gauges.<prefix>.<name>``. Every metric path in a panel must be one flask-quota emits,
and every metric it emits must be in some panel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from flask_quota import metrics
from flask_quota._config import DEFAULTS
from flask_quota.metrics import (
    ADAPTIVE_FACTOR,
    ALLOWED,
    BYPASSED,
    CHECK_TIMER,
    DENIED,
    DRY_RUN_DENIED,
    EMERGENCY_FACTOR,
    NEAR_LIMIT,
    STORAGE_ERROR,
)

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "flask-quota.json"

COUNTERS = {ALLOWED, DENIED, BYPASSED, NEAR_LIMIT, DRY_RUN_DENIED, STORAGE_ERROR}
#: ``denied.<limit name>``, one series per (sanitised) limit name.
DENIED_BY_LIMIT = f"{DENIED}.*"
TIMERS = {CHECK_TIMER}
GAUGES = {EMERGENCY_FACTOR, ADAPTIVE_FACTOR}
#: What statsd computes for a timer (with the default percentThreshold of 90).
TIMER_AGGREGATES = {
    "mean",
    "upper",
    "lower",
    "count",
    "count_ps",
    "sum",
    "median",
    "std",
    "mean_90",
    "upper_90",
    "sum_90",
}

NAMESPACES = {
    "counter": r"stats\.\$prefix\.",
    "timer": r"stats\.timers\.\$prefix\.",
    "gauge": r"stats\.gauges\.\$prefix\.",
}
METRIC = r"([A-Za-z0-9_*]+(?:\.[A-Za-z0-9_*]+)*)"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, Graphite target) of every query."""
    return [
        (panel["title"], target["target"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def metric_paths(target: str) -> dict[str, set[str]]:
    """The metric paths after ``$prefix`` in a target, by namespace."""
    found: dict[str, set[str]] = {kind: set() for kind in NAMESPACES}
    for kind, namespace in NAMESPACES.items():
        found[kind] |= set(re.findall(namespace + METRIC, target))
    return found


def test_the_metric_module_sends_no_name_this_test_does_not_know() -> None:
    # A metric added to flask_quota.metrics must be added here, and to the dashboard.
    names = {
        value
        for name, value in vars(metrics).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, str)
    }
    assert names == COUNTERS | TIMERS | GAUGES


def test_the_dashboard_is_importable(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] == "flask-quota"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 30
    assert "legacyNamespace" in dashboard["description"]
    panels = dashboard["panels"]
    assert panels
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["type"] in {"timeseries", "stat"}
        assert panel["title"]
        assert panel["datasource"] == {"type": "graphite", "uid": "${datasource}"}
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(set(refs)) == len(refs)


def test_the_templating_picks_the_datasource_and_the_prefix(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}

    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "graphite"
    prefix = variables["prefix"]
    assert prefix["current"]["value"] == DEFAULTS["QUOTA_STATSD_PREFIX"] == "quota"
    assert prefix["query"] == "quota"


def test_every_target_reads_only_metrics_the_code_emits(dashboard: dict[str, Any]) -> None:
    for title, target in targets(dashboard):
        paths = metric_paths(target)
        assert any(paths.values()), f"{title}: {target} reads no flask-quota metric"
        # Every $prefix sits in one of statsd's namespaces (no stats_counts., no typo).
        assert target.count("$prefix") == sum(
            len(re.findall(n, target)) for n in NAMESPACES.values()
        )
        for path in paths["counter"]:
            assert path in COUNTERS or path == DENIED_BY_LIMIT, f"{title}: counter {path}"
        for path in paths["timer"]:
            name, _, aggregate = path.rpartition(".")
            assert name in TIMERS and aggregate in TIMER_AGGREGATES, f"{title}: timer {path}"
        for path in paths["gauge"]:
            assert path in GAUGES, f"{title}: gauge {path}"


def test_every_emitted_metric_is_in_some_panel(dashboard: dict[str, Any]) -> None:
    used: dict[str, set[str]] = {kind: set() for kind in NAMESPACES}
    for _, target in targets(dashboard):
        for kind, paths in metric_paths(target).items():
            used[kind] |= paths

    assert used["counter"] >= COUNTERS | {DENIED_BY_LIMIT}
    assert {path.rpartition(".")[0] for path in used["timer"]} == TIMERS
    # Latency: an average, a percentile and the maximum.
    assert {f"{CHECK_TIMER}.{a}" for a in ("mean", "upper_90", "upper")} <= used["timer"]
    assert used["gauge"] == GAUGES


def test_denials_by_limit_are_named_by_the_limit(dashboard: dict[str, Any]) -> None:
    # The prefix may hold dots (QUOTA_STATSD_PREFIX = "myapp.api"): name series from the end.
    by_limit = [t for _, t in targets(dashboard) if f"$prefix.{DENIED_BY_LIMIT}" in t]
    assert by_limit == [f"aliasByMetric(stats.$prefix.{DENIED_BY_LIMIT})"]


def test_the_metric_path_extraction_sees_a_wrong_name() -> None:
    # The checks above are only as good as this parser: it must catch each kind of mistake.
    assert metric_paths("alias(stats.$prefix.denyed, 'x')")["counter"] == {"denyed"}
    assert metric_paths("stats.timers.$prefix.chek.mean")["timer"] == {"chek.mean"}
    assert metric_paths("sumSeries(stats_counts.$prefix.allowed)") == {
        "counter": set(),
        "timer": set(),
        "gauge": set(),
    }
