"""Recorded histories replay with the current workflow code (no server needed).

A change to IdentityVerification that would break verifications already
running fails here. The histories come from ``python -m tests.histories.regenerate``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow

from cli.replay import ReplayFailed, load_history, replay
from domain.contracts import VerificationRequest, VerificationResult
from settings import Settings
from workflows.identity_verification import IdentityVerification

from ..histories.regenerate import PAYLOAD_KEYS

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("idv-history-*.json"))


@pytest.fixture
def history_keys(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test-only payload key the histories were recorded with."""
    monkeypatch.setenv("IDFLOW_PAYLOAD_KEYS", PAYLOAD_KEYS)
    return Settings.from_env()


def test_every_representative_outcome_is_recorded() -> None:
    cases = {path.stem.removeprefix("idv-history-") for path in HISTORIES}
    assert cases == {
        "approved",
        "face-mismatch",
        "no-face",
        "corrupt",
        "credential",
        "review-approved",
        "review-expired",
        "model-unavailable",
        "processing-failed",
        "binding-retried",
        "webhook",
        # Recorded before holder data went by reference and reviews were signed:
        # workflows of that code may still run, so their histories must replay.
        "credential-inline-holder",
        "review-approved-unsigned",
        "processing-failed-unsigned",
        "binding-retried-unsigned",
    }


@pytest.mark.parametrize("path", HISTORIES, ids=lambda path: path.stem)
def test_recorded_history_replays_with_the_current_code(path: Path, history_keys: Settings) -> None:
    asyncio.run(replay(load_history(path), history_keys))


@workflow.defn(name="IdentityVerification", sandboxed=False)
class WaitsBeforeResolvingModels(IdentityVerification):
    """The workflow with one step added at the front: not replay-safe."""

    @workflow.run
    async def run(self, request: VerificationRequest) -> VerificationResult:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(request)


def test_a_change_that_breaks_running_verifications_fails_replay(history_keys: Settings) -> None:
    history = load_history(HISTORIES[0])
    with pytest.raises(ReplayFailed, match="does not replay"):
        asyncio.run(replay(history, history_keys, workflows=[WaitsBeforeResolvingModels]))


def test_replay_command_reports_determinism(history_keys: Settings) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "cli", "replay", str(HISTORIES[0])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "replays deterministically" in ok.stdout


def test_replay_command_fails_loudly_on_a_history_the_code_cannot_reproduce(
    history_keys: Settings, tmp_path: Path
) -> None:
    tampered = tmp_path / HISTORIES[0].name
    tampered.write_text(HISTORIES[0].read_text().replace('"check_quality"', '"check_quality_v0"'))
    failed = subprocess.run(
        [sys.executable, "-m", "cli", "replay", str(tampered)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert failed.returncode == 1
    assert "NON-DETERMINISTIC" in failed.stderr and "idv-history-" in failed.stderr
