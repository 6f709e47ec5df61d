"""The Temporal schedules the worker pools keep in place."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
)

from settings import Settings


def retention_schedule_id(settings: Settings) -> str:
    return f"idflow-retention-{settings.cpu_task_queue}"


async def ensure_retention_schedule(client: Client, settings: Settings, every: timedelta) -> str:
    """Create (or update) the schedule that runs ``RetentionSweep`` every ``every``."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            "RetentionSweep",
            id=f"idflow-retention-sweep-{settings.cpu_task_queue}",
            task_queue=settings.cpu_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(retention_schedule_id(settings), schedule)
    except ScheduleAlreadyRunningError:
        await client.get_schedule_handle(retention_schedule_id(settings)).update(
            lambda _: ScheduleUpdate(schedule=schedule)
        )
    return retention_schedule_id(settings)
