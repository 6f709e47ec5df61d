"""Activities: find verifications whose retention ended, and purge one."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from temporalio import activity

from domain.contracts import PurgeRequest, PurgeResult
from store import retention
from store.blobs import BlobStore

from . import names


class RetentionActivities:
    def __init__(self, engine: Engine, blobs: BlobStore) -> None:
        self.engine = engine
        self.blobs = blobs

    @activity.defn(name=names.FIND_EXPIRED)
    def find_expired(self, limit: int) -> list[str]:
        return retention.expired(self.engine, limit)

    @activity.defn(name=names.PURGE_VERIFICATION)
    def purge_verification(self, request: PurgeRequest) -> PurgeResult:
        return retention.purge(self.engine, self.blobs, request)
