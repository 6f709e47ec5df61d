"""Activity: resolve model pins and aliases to exact versions, once per verification.

It also applies the canary share and finds the shadow versions
(models.lifecycle.rollout).
"""

from __future__ import annotations

from sqlalchemy.engine import Engine
from temporalio import activity

from domain import policy
from domain.contracts import ModelChoice, ResolvedModels, ResolveModelsInput
from domain.enums import DECIDING_TASKS, ModelTask
from domain.errors import ModelUnavailable
from models.lifecycle.rollout import resolve_verification

from . import names
from .errors import non_retryable_rejections


class ModelActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name=names.RESOLVE_VERIFICATION_MODELS)
    @non_retryable_rejections
    def resolve_verification_models(self, request: ResolveModelsInput) -> ResolvedModels:
        resolved = resolve_verification(self.engine, request.verification_id, request.model_pins)
        _deciding(resolved.deciding)
        return resolved


def _deciding(choices: dict[ModelTask, ModelChoice]) -> dict[ModelTask, ModelChoice]:
    """``choices``, once every deciding task is known to have thresholds."""
    for task in DECIDING_TASKS:  # their thresholds decide: they must have them
        try:
            policy.require_thresholds(choices[task])
        except policy.ThresholdsMissing as missing:
            raise ModelUnavailable(str(missing)) from None
    return choices
