"""Every pool serves Prometheus metrics and health; a verification moves the counters.

The Grafana dashboard and the alert rules in ``deploy/`` parse, and every
metric they query is one the pools really serve.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from activities.metrics import SCORE_BUCKETS
from devstack.samples import SamplePair, sample_pairs
from domain.reasons import Decision
from security.codec_server import CODEC_REQUESTS
from settings import PROJECT_ROOT

from ..support.metrics import get, scrape, value
from ..support.temporal import IdflowStack

DEPLOY = PROJECT_ROOT / "deploy"
ALERT_GROUPS = {"idflow-errors", "idflow-review", "idflow-drift"}


def alert_rules() -> list[dict]:
    document = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert {group["name"] for group in document["groups"]} == ALERT_GROUPS
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "idflow-dashboard.json").read_text())
    assert dashboard["uid"] == "idflow-overview" and dashboard["panels"]
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def queried_metrics() -> set[str]:
    """The idflow_* and temporal_* series the dashboard and the rules query."""
    queries = dashboard_queries() + [rule["expr"] for rule in alert_rules()]
    return {name for query in queries for name in re.findall(r"\b(?:idflow|temporal)_\w+", query)}


def test_alert_rules_and_dashboard_parse() -> None:
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert {"IdflowStageErrorRateHigh", "IdflowReviewBacklogHigh", "IdflowScoreDrift"} <= names
    for rule in rules:
        assert rule["expr"].strip() and rule["for"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
    assert all(query.strip() for query in dashboard_queries())


@pytest.fixture(scope="module")
def pairs(photo_dir: Path) -> dict[str, SamplePair]:
    return sample_pairs(photo_dir)


def test_pools_are_healthy_and_ready(idflow_stack: IdflowStack) -> None:
    for pool in ("cpu", "gpu"):
        port = getattr(idflow_stack.settings, f"{pool}_metrics_port")
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
        # Ready once the worker runs its pollers: a moment after the stack saw it start.
        deadline = time.monotonic() + 60
        while (answer := get(f"http://127.0.0.1:{port}/readyz")) != (200, "ready\n"):
            assert answer == (503, "not ready\n") and time.monotonic() < deadline, answer
            time.sleep(0.1)


def test_a_verification_moves_the_counters(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair]
) -> None:
    before = {pool: scrape(idflow_stack, pool) for pool in ("cpu", "gpu")}
    result = idflow_stack.verify(pairs["same person"].selfie, pairs["same person"].document)
    assert result.decision is Decision.APPROVED
    after = {pool: scrape(idflow_stack, pool) for pool in ("cpu", "gpu")}

    def moved(pool: str, name: str, **labels: str) -> float:
        return value(after[pool], name, **labels) - value(before[pool], name, **labels)

    # idflow's own: the decision, each stage, the models and their scores.
    assert moved("cpu", "idflow_verifications_total", decision="approved", reason="none") == 1
    assert moved("cpu", "idflow_stage_duration_seconds_count", stage="check_quality") == 1
    assert moved("gpu", "idflow_stage_duration_seconds_count", stage="check_biometrics") == 1
    embed = result.model_versions["embed"]
    liveness = result.model_versions["liveness"]
    assert moved("gpu", "idflow_model_inference_seconds_count", model=embed) >= 1
    assert moved("gpu", "idflow_model_batch_size_count", model=liveness) >= 1
    assert moved("gpu", "idflow_score_count", score="face_match", model=embed) == 1
    assert moved("gpu", "idflow_score_count", score="liveness", model=liveness) == 1
    # The face-match score landed in the bucket its value belongs to (le is inclusive).
    score = result.scores["face_match"]
    below, above = (
        max(b for b in SCORE_BUCKETS if b < score),
        min(b for b in SCORE_BUCKETS if b >= score),
    )
    assert moved("gpu", "idflow_score_bucket", score="face_match", model=embed, le=str(above)) == 1
    assert moved("gpu", "idflow_score_bucket", score="face_match", model=embed, le=str(below)) == 0
    # The database's count by status, read at the scrape.
    assert moved("cpu", "idflow_verifications_by_status", status="completed") == 1
    # The Temporal SDK's runtime telemetry, passed through on the same endpoint.
    # (the SDK's core updates its exporter a moment after the task completes)
    deadline = time.monotonic() + 30
    while value(scrape(idflow_stack, "cpu"), "temporal_workflow_completed_total") <= value(
        before["cpu"], "temporal_workflow_completed_total"
    ):
        assert time.monotonic() < deadline, "temporal_workflow_completed_total did not move"
        time.sleep(0.2)
    assert moved("gpu", "temporal_activity_execution_latency_count") >= 1

    # Every series the dashboard and the alert rules query exists (the codec's on its server).
    served = {key.split("{")[0] for pool in ("cpu", "gpu") for key in after[pool]}
    codec = {f"{CODEC_REQUESTS._name}_total"}
    assert queried_metrics() - codec <= served, queried_metrics() - codec - served
