"""Activity: resolve model pins and aliases to exact versions, once per verification."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from temporalio import activity

from domain import policy
from domain.contracts import ModelChoice, ResolveModelsInput
from domain.errors import ModelUnavailable
from models.lifecycle.registry import resolve_all

from . import names
from .errors import non_retryable_rejections

DECIDING_TASKS = ("liveness", "embed")  # their thresholds decide: they must have them


class ModelActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name=names.RESOLVE_MODELS)
    @non_retryable_rejections
    def resolve_models(self, request: ResolveModelsInput) -> dict[str, ModelChoice]:
        choices = resolve_all(self.engine, request.model_pins)
        for task in DECIDING_TASKS:
            try:
                policy.require_thresholds(choices[task])
            except policy.ThresholdsMissing as missing:
                raise ModelUnavailable(str(missing)) from None
        return choices
