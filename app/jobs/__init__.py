"""Jobs: the durable store of accepted work, and the workers that run it.

``store`` owns the database (jobs, batches, progress events, API keys) and the lease
protocol that lets a job survive its worker's death; runners build on it.
"""

from __future__ import annotations

from .store import (
    ACTIVE_STATUSES,
    JOB_KINDS,
    JOB_STATUSES,
    TERMINAL_STATUSES,
    BatchLine,
    BatchStatus,
    EventType,
    IdempotencyConflict,
    IdempotencyInProgress,
    InvalidCursor,
    Job,
    JobEvent,
    JobKind,
    JobStatus,
    JobStore,
    JobStoreError,
    NotAwaitingInput,
    StoreBusy,
    request_hash,
    sqlite_url,
)

__all__ = [
    "ACTIVE_STATUSES",
    "JOB_KINDS",
    "JOB_STATUSES",
    "TERMINAL_STATUSES",
    "BatchLine",
    "BatchStatus",
    "EventType",
    "IdempotencyConflict",
    "IdempotencyInProgress",
    "InvalidCursor",
    "Job",
    "JobEvent",
    "JobKind",
    "JobStatus",
    "JobStore",
    "JobStoreError",
    "NotAwaitingInput",
    "StoreBusy",
    "request_hash",
    "sqlite_url",
]
