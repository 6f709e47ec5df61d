"""Prometheus metrics of verifications: decisions, stage latency, score distributions.

- ``idflow_verifications_total{decision, reason}``: one per decided verification
  and reason code (``reason="none"`` for a decision without one), counted by
  the record activity when the workflow records its ``decided`` event.
- ``idflow_review_events_total{event}``: ``requested`` / ``reviewed``; their
  difference summed over the CPU pools is the review backlog.
- ``idflow_stage_duration_seconds{stage, outcome}``: each activity attempt
  (``stage`` is the activity type), ``outcome`` ``ok`` or ``error``; recorded
  by the worker's interceptor (``workers/telemetry.py``).
- ``idflow_stage_in_flight{stage}``: activity attempts running in this process
  now (what a stopping worker still has to finish).
- ``idflow_score{score, model}``: liveness and face-match scores per model
  version (shadows too): the basis of the drift alerts.
- ``idflow_webhook_attempts_total{outcome}``: each webhook HTTP attempt:
  ``delivered`` (2xx), ``retry`` (408/425/429/5xx, timeout, connection
  failure: tried again), ``refused`` (any other status: not tried again),
  ``endpoint_gone`` (the endpoint was deleted).
- ``idflow_webhook_deliveries_total{outcome}``: each delivery as it ends:
  ``delivered``, or ``failed`` when the sender gives up.

Labels carry only codes, names and model versions: never an id or personal data.
A retried record activity counts again (rare: it is a local activity that
writes one row).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from domain.contracts import RecordInput

VERIFICATIONS = Counter(
    "idflow_verifications",
    "Decided verifications, by decision and reason code",
    ["decision", "reason"],
)
REVIEW_EVENTS = Counter("idflow_review_events", "Manual reviews requested and completed", ["event"])
STAGE_SECONDS = Histogram(
    "idflow_stage_duration_seconds",
    "Wall time of one activity attempt, by stage and outcome",
    ["stage", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
STAGE_IN_FLIGHT = Gauge(
    "idflow_stage_in_flight", "Activity attempts running in this process now, by stage", ["stage"]
)
SCORE_BUCKETS = tuple(round(0.05 * step, 2) for step in range(1, 20))
SCORES = Histogram(
    "idflow_score",
    "Scores by kind and model version (liveness, face_match)",
    ["score", "model"],
    buckets=SCORE_BUCKETS,
)
WEBHOOK_ATTEMPTS = Counter(
    "idflow_webhook_attempts", "Webhook HTTP attempts, by outcome", ["outcome"]
)
WEBHOOK_DELIVERIES = Counter(
    "idflow_webhook_deliveries", "Webhook deliveries that ended, by outcome", ["outcome"]
)
_REVIEW_EVENTS = {"review_requested": "requested", "reviewed": "reviewed"}


def observe_record(entry: RecordInput) -> None:
    """Count what a recorded event says about decisions and reviews."""
    if entry.event in _REVIEW_EVENTS:
        REVIEW_EVENTS.labels(_REVIEW_EVENTS[entry.event]).inc()
    if entry.event == "decided" and entry.result is not None:
        decision = entry.result.decision.value
        for reason in entry.result.reasons or [None]:
            VERIFICATIONS.labels(decision, reason.value if reason else "none").inc()


def observe_score(score: str, model: str, value: float) -> None:
    SCORES.labels(score, model).observe(value)
