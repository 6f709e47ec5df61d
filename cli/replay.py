"""Deterministic replay: run a recorded history through the current workflow code.

A change to ``IdentityVerification`` that would break verifications already
running (a different sequence of commands for the same history) makes the
replay fail with a ``NondeterminismError``; CI replays the histories kept under
``tests/histories/`` for exactly that reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from security.payload_codec import Binding, data_converter
from settings import Settings
from workflows.identity_verification import IdentityVerification, workflow_id


class ReplayFailed(Exception):
    """The current workflow code does not reproduce the recorded history."""


def load_history(path: Path) -> WorkflowHistory:
    """A history saved by ``save_history`` (file name: ``<workflow id>.json``)."""
    return WorkflowHistory.from_json(path.stem, path.read_text())


def save_history(history: WorkflowHistory, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{history.workflow_id}.json"
    path.write_text(history.to_json())
    return path


async def fetch_history(client: Client, verification_id: str) -> WorkflowHistory:
    return await client.get_workflow_handle(workflow_id(verification_id)).fetch_history()


async def replay(
    history: WorkflowHistory,
    settings: Settings,
    workflows: Sequence[type] = (IdentityVerification,),
) -> None:
    # Replay reads what was recorded and acts on nothing: any payload under our keys
    # will do, also those of histories recorded before payloads were bound to a workflow.
    replayer = Replayer(
        workflows=workflows, data_converter=data_converter(settings, Binding.ANY_WORKFLOW)
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is not None:
        failure = result.replay_failure
        raise ReplayFailed(
            f"{history.workflow_id}: the current workflow code does not replay its history "
            f"({type(failure).__name__}: {failure})"
        )
