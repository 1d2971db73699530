"""The job store: every accepted job, batch, progress event and API key, in one database.

This module owns the durable state behind the service's promise that nothing accepted is
lost (DESIGN.md, non-negotiable 5). A job is committed by :meth:`JobStore.create_job` before
the API answers 202; workers then *lease* it (:meth:`JobStore.claim_next`), keep the lease
alive with heartbeats, and end it with :meth:`JobStore.finish`. A worker that dies stops
heartbeating, its lease expires, and the job is claimed again with one more attempt, or
fails with the reason once ``max_attempts`` runs have died. Terminal states never change.

One code path serves two databases through SQLAlchemy Core:

* **SQLite** (the embedded default, a file in WAL mode). SQLite has one writer at a time, so
  every write transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock up front
  (waiting up to ``busy_timeout``) instead of upgrading a read snapshot later, which in WAL
  mode fails at once with ``SQLITE_BUSY_SNAPSHOT`` when another process committed in between.
  Writers are therefore serialized across threads and processes, and a claim's
  read-then-update cannot interleave with another claim. The store retries ``BEGIN
  IMMEDIATE`` itself in short jittered steps (see :func:`_begin_immediate`), because
  SQLite's own busy handler lets a writer in a tight loop starve the others.
* **Postgres** (scale-out, by URL). Transactions run at READ COMMITTED; rows are read with
  ``SELECT ... FOR UPDATE`` before they are changed, and claims use ``FOR UPDATE SKIP
  LOCKED`` so that concurrent workers each take a different job without waiting on one
  another. (SQLite's compiler drops ``FOR UPDATE``; there the write lock does the job.)

Idempotency keys (the IETF ``Idempotency-Key`` draft) are unique per owner through a
constraint on ``(owner, idempotency_key)``, and a job is created with ``INSERT ... ON
CONFLICT DO NOTHING``:

* same key, same request (kind and body, hashed canonically): the existing job comes back
  (``created`` is False; the API answers as for the first request);
* same key, another request: :class:`IdempotencyConflict` (the API's 422);
* same key while the first request's transaction has not committed yet: on Postgres the
  insert waits on the uncommitted row's unique-index entry. If the first commits within
  ``idempotency_wait_s`` this is one of the two cases above; if it rolls back, this request
  creates the job; if it is still open when the wait runs out, :class:`IdempotencyInProgress`
  (the API's 409, "retry later"). On SQLite an uncommitted row is invisible and writers are
  serialized, so the second request waits for the first to commit and then sees its job; if
  the write lock stays busy past ``busy_timeout`` the store cannot tell whose transaction
  holds it and raises :class:`StoreBusy` (the API's 503 with ``Retry-After``) instead.
  The row and its first event are written in one transaction, so a job that is visible is
  always complete.

Durability: what a client hands over (a job, a batch, answers, a cancel, an API key) is
committed with SQLite ``synchronous=FULL`` (Postgres ``synchronous_commit`` on): it is on
disk, power loss included, before the API answers. A worker's own writes (claims,
heartbeats, events, finishes) commit with ``NORMAL`` in WAL mode (Postgres: off): they
survive the crash of any process, and a power loss can only take the last of them back,
which sends that job round again (its lease expires); it is never lost. That halves the disk
flushes a small job costs, which with SQLite's one writer was what two workers waited on.

All times are UTC, taken from an injectable clock (never from the database's ``now()``), so
tests can move time and leases expire deterministically. Open one store per process: the
engine's connection pool must not cross a ``fork``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import random
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal, cast, get_args

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    and_,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import RowMapping, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from app.errors import AppError

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

JobKind = Literal["solve", "formalize"]
JobStatus = Literal["queued", "running", "needs_input", "succeeded", "failed", "cancelled"]
TerminalStatus = Literal["succeeded", "failed", "cancelled"]
EventType = Literal["stage", "log", "status"]
BatchState = Literal["queued", "in_progress", "completed"]

JOB_KINDS: Final[tuple[JobKind, ...]] = get_args(JobKind)
JOB_STATUSES: Final[tuple[JobStatus, ...]] = get_args(JobStatus)
TERMINAL_STATUSES: Final[frozenset[JobStatus]] = frozenset(get_args(TerminalStatus))
ACTIVE_STATUSES: Final[frozenset[JobStatus]] = frozenset(JOB_STATUSES) - TERMINAL_STATUSES
EVENT_TYPES: Final[tuple[EventType, ...]] = get_args(EventType)

DEFAULT_DB_FILENAME: Final = "jobs.sqlite3"
MAX_KEY_LENGTH: Final = 255
API_KEY_PREFIX: Final = "osk"

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- errors -------------------------------------------------------------------------------


class JobStoreError(AppError):
    """Base of the errors the job store raises on purpose."""


class IdempotencyConflict(JobStoreError):
    """The idempotency key was already used by this owner for a different request (HTTP 422)."""

    def __init__(self, key: str, job_id: str) -> None:
        self.key = key
        self.job_id = job_id
        super().__init__(
            f"The Idempotency-Key {key!r} was already used for a different request (job {job_id}); "
            "send the same body to get that job back, or use a new key for a new request."
        )


class IdempotencyInProgress(JobStoreError):
    """A request with this idempotency key is still being accepted (HTTP 409, retry later)."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"A request with the Idempotency-Key {key!r} is still being accepted; "
            "retry in a moment to get its job."
        )


class StoreBusy(JobStoreError):
    """The database stayed locked past the configured wait (HTTP 503 with Retry-After)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"The job store is busy ({detail}); retry in a moment.")


class InvalidCursor(JobStoreError, ValueError):
    """A pagination cursor that this store did not hand out (HTTP 422)."""

    def __init__(self, cursor: str) -> None:
        self.cursor = cursor
        super().__init__(f"The cursor {cursor[:40]!r} is not one this service returned; start without one.")


class NotAwaitingInput(JobStoreError):
    """Answers were sent for a job that is not waiting for any (HTTP 409)."""

    def __init__(self, job_id: str, status: str) -> None:
        self.job_id = job_id
        self.status = status
        super().__init__(
            f"The job {job_id} is {status}, not needs_input: it has no open questions to answer."
        )


# --- schema -------------------------------------------------------------------------------


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time zone type: values are stored as naive UTC text, which SQLAlchemy writes
    in a fixed-width format, so comparisons and ``ORDER BY`` on the text are chronological.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"the job store takes aware datetimes only, got naive {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Python None is SQL NULL (not JSON null), so "no result" and "no error" read as absent.
_JSON = JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")

metadata = MetaData()

batches = Table(
    "batches",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("input_file_name", String(MAX_KEY_LENGTH)),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_batches_owner_created", "owner", "created_at", "id"),
)

# One column per status holds the first time the job entered it: transitions are plain
# column writes (no JSON read-modify-write), and batches aggregate them with MIN / MAX.
_STATUS_AT: Final[dict[JobStatus, str]] = {status: f"{status}_at" for status in JOB_STATUSES}

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("stage", String(MAX_KEY_LENGTH), nullable=False),
    Column("request", _JSON, nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("result", _JSON),
    Column("error", _JSON),
    Column("questions", _JSON),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("lease_owner", String(MAX_KEY_LENGTH)),
    Column("lease_expires_at", UTCDateTime),
    Column("cancel_requested", Boolean, nullable=False),
    Column("idempotency_key", String(MAX_KEY_LENGTH)),
    Column("batch_id", String(32), ForeignKey("batches.id", ondelete="CASCADE")),
    Column("custom_id", String(MAX_KEY_LENGTH)),
    # Position in the batch's input (0 outside batches): results come back in input order,
    # and jobs created in one transaction (same created_at) are claimed in that order.
    Column("batch_index", Integer, nullable=False),
    # Last event sequence number handed out; incremented under the row's lock.
    Column("event_seq", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    *(Column(name, UTCDateTime) for name in _STATUS_AT.values()),
    Column("finished_at", UTCDateTime),
    # NULL keys never collide (SQL NULLs are distinct), so only keyed jobs are constrained.
    UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
    UniqueConstraint("batch_id", "custom_id", name="uq_jobs_batch_custom_id"),
    Index("ix_jobs_owner_created", "owner", "created_at", "id"),
    Index("ix_jobs_status_created", "status", "created_at", "batch_index", "id"),
    Index("ix_jobs_status_lease", "status", "lease_expires_at"),
    Index("ix_jobs_batch_index", "batch_id", "batch_index"),
)

job_events = Table(
    "job_events",
    metadata,
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("ts", UTCDateTime, nullable=False),
    Column("type", String(16), nullable=False),
    Column("data", _JSON, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(MAX_KEY_LENGTH), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
)


# --- values handed out --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """One job as stored at the moment it was read."""

    id: str
    owner: str
    kind: JobKind
    status: JobStatus
    stage: str
    request: dict[str, Any]
    request_hash: str
    result: Any
    error: dict[str, Any] | None
    questions: Any
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    idempotency_key: str | None
    batch_id: str | None
    custom_id: str | None
    batch_index: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    timestamps: dict[JobStatus, datetime] = field(default_factory=dict)
    """The first time the job entered each status it has been in."""

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One progress event of a job, for Server-Sent Events; ``seq`` starts at 1 per job."""

    job_id: str
    seq: int
    ts: datetime
    type: EventType
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One line of a batch upload."""

    custom_id: str
    kind: JobKind
    request: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """A batch with its state and counts, derived from its jobs when read.

    ``status`` is ``queued`` until one of its jobs starts, ``in_progress`` until all are
    terminal, then ``completed``. ``completed`` in ``counts`` is the number of jobs that
    succeeded (as in OpenAI's ``request_counts``); ``failed`` and ``cancelled`` the others
    that ended; ``counts`` also holds every job status.
    """

    id: str
    owner: str
    status: BatchState
    input_file_name: str | None
    total: int
    counts: dict[str, int]
    created_at: datetime
    in_progress_at: datetime | None
    completed_at: datetime | None

    @property
    def timestamps(self) -> dict[str, datetime]:
        """The time of each transition the batch has made so far."""
        stamps = {
            "created": self.created_at,
            "in_progress": self.in_progress_at,
            "completed": self.completed_at,
        }
        return {name: ts for name, ts in stamps.items() if ts is not None}


# --- helpers ------------------------------------------------------------------------------


def request_hash(kind: str, request: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a job's kind and body: equal requests, equal hashes."""
    canonical = json.dumps(
        {"kind": kind, "request": request}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of a SQLite database file."""
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def _job_from_row(row: RowMapping) -> Job:
    stamps = {status: row[column] for status, column in _STATUS_AT.items() if row[column] is not None}
    return Job(
        id=row["id"],
        owner=row["owner"],
        kind=row["kind"],
        status=row["status"],
        stage=row["stage"],
        request=row["request"],
        request_hash=row["request_hash"],
        result=row["result"],
        error=row["error"],
        questions=row["questions"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        cancel_requested=bool(row["cancel_requested"]),
        idempotency_key=row["idempotency_key"],
        batch_id=row["batch_id"],
        custom_id=row["custom_id"],
        batch_index=row["batch_index"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        timestamps=stamps,
    )


def _check_events(items: Sequence[tuple[EventType, Mapping[str, Any]]]) -> None:
    for kind, data in items:
        if kind not in EVENT_TYPES:
            raise ValueError(f"event type must be one of {', '.join(EVENT_TYPES)}, got {kind!r}")
        if kind == "stage":
            stage = data.get("stage")
            if not isinstance(stage, str):
                raise ValueError("a stage event carries its stage: {'stage': 'solving'}")
            _check_key("stage", stage)


def _check_key(what: str, value: str | None) -> None:
    if value is not None and not 0 < len(value) <= MAX_KEY_LENGTH:
        raise ValueError(f"{what} must be 1 to {MAX_KEY_LENGTH} characters long, got {len(value)}")


def _check_kind(kind: str) -> None:
    if kind not in JOB_KINDS:
        raise ValueError(f"job kind must be one of {', '.join(JOB_KINDS)}, got {kind!r}")


def _check_error(error: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if error is None:
        return None
    if not isinstance(error.get("code"), str) or not isinstance(error.get("message"), str):
        raise ValueError(f"a job error is {{'code': str, 'message': str, ...}}, got {dict(error)!r}")
    return dict(error)


def _encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, job_id = json.loads(raw)
        created_at = datetime.fromisoformat(stamp)
        if not isinstance(job_id, str) or created_at.tzinfo is None:
            raise ValueError(cursor)
    except (binascii.Error, ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise InvalidCursor(cursor) from exc
    return created_at, job_id


def _is_lock_timeout(exc: OperationalError) -> bool:
    """SQLite's "database is locked" after busy_timeout, or Postgres' lock_not_available."""
    orig = exc.orig
    if isinstance(orig, sqlite3.OperationalError):
        return "locked" in str(orig) or "busy" in str(orig)
    return getattr(orig, "sqlstate", None) == "55P03"


def _hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


# --- the store ----------------------------------------------------------------------------


class JobStore:
    """Jobs, batches, events and API keys in SQLite (a file, WAL) or Postgres (by URL).

    Every public method is one transaction. Methods taking ``owner`` answer ``None`` for a
    job or batch that another owner created, exactly as for one that does not exist, so the
    API can answer 404 to both without telling them apart.
    """

    def __init__(
        self,
        url: str | Path,
        *,
        clock: Clock = _utcnow,
        busy_timeout_s: float = 10.0,
        idempotency_wait_s: float = 5.0,
        echo: bool = False,
    ) -> None:
        """Open (and create if needed) the store.

        ``url`` is a SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg://...``) or the
        path of a SQLite file (see also :meth:`in_data_dir`). Parent directories of a SQLite
        file are created. ``busy_timeout_s`` bounds how long a SQLite
        writer waits for the write lock; ``idempotency_wait_s`` how long a Postgres insert
        waits on an uncommitted request with the same idempotency key.
        """
        self._clock = clock
        self._idempotency_wait_s = idempotency_wait_s
        if isinstance(url, Path) or "://" not in url:
            url = sqlite_url(url)
        parsed = make_url(url)
        self._dialect = parsed.get_backend_name()
        if self._dialect == "sqlite":
            database = parsed.database or ""
            if database in ("", ":memory:") or database.startswith("file:"):
                raise ValueError(
                    f"the job store needs a SQLite file that every worker process can open; got {url!r}"
                )
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            self._engine = create_engine(
                parsed, echo=echo, connect_args={"timeout": busy_timeout_s}, pool_size=5, max_overflow=20
            )
            _install_sqlite_hooks(self._engine, busy_timeout_s)
        else:
            self._engine = create_engine(parsed, echo=echo, pool_pre_ping=True)
        try:
            with self._write() as conn:
                if self._dialect == "postgresql":
                    # Serialize schema creation between processes that start together.
                    conn.execute(text("SELECT pg_advisory_xact_lock(7462081530)"))
                metadata.create_all(conn)
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def in_data_dir(cls, data_dir: str | Path, **options: Any) -> JobStore:
        """The embedded default: ``<data_dir>/jobs.sqlite3``, the directory created if needed."""
        return cls(Path(data_dir).expanduser() / DEFAULT_DB_FILENAME, **options)

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self._dialect

    def close(self) -> None:
        """Close every pooled connection; the store can not be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> None:
        """Raise if the database cannot be reached (for /readyz)."""
        with self._read() as conn:
            conn.execute(select(1))

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[Connection]:
        """A write transaction. ``durable``: its commit survives a power loss (SQLite
        ``synchronous=FULL``; Postgres ``synchronous_commit`` on). The workers' own writes
        (claims, heartbeats, events, finishes) are not: they survive a crash of any process,
        and a power loss can only take the last of them back, so the job runs again (its
        lease expires), never lost. What a client hands over (jobs, batches, answers,
        cancels, keys) always is."""
        try:
            with self._engine.connect() as conn:
                conn.execution_options(optscribe_write=True, optscribe_durable=durable)
                with conn.begin():
                    if not durable and self._dialect == "postgresql":
                        conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                    yield conn
        except OperationalError as exc:
            if _is_lock_timeout(exc):
                raise StoreBusy(str(exc.orig)) from exc
            raise

    # --- jobs: accepting and reading ------------------------------------------------------

    def create_job(
        self,
        owner: str,
        kind: JobKind,
        request: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        max_attempts: int = 3,
        batch_id: str | None = None,
        custom_id: str | None = None,
    ) -> tuple[Job, bool]:
        """Persist a queued job; answer it and whether it is new (False: an idempotent replay).

        Raises :class:`IdempotencyConflict`, :class:`IdempotencyInProgress` or
        :class:`StoreBusy` as the module's docstring describes.
        """
        _check_kind(kind)
        _check_key("owner", owner)
        _check_key("idempotency_key", idempotency_key)
        _check_key("custom_id", custom_id)
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        body = dict(request)
        digest = request_hash(kind, body)
        now = self._clock()
        row = self._new_job_row(owner, kind, body, digest, now, max_attempts=max_attempts)
        row.update(idempotency_key=idempotency_key, batch_id=batch_id, custom_id=custom_id)
        try:
            with self._write() as conn:
                if batch_id is not None and not self._owns_batch(conn, batch_id, owner):
                    raise ValueError(f"there is no batch {batch_id} of {owner}")
                if idempotency_key is None:
                    conn.execute(insert(jobs).values(row))
                else:
                    if self._dialect == "postgresql":
                        wait_ms = max(1, int(self._idempotency_wait_s * 1000))
                        conn.execute(text(f"SET LOCAL lock_timeout = {wait_ms}"))
                    inserted = conn.execute(
                        self._insert_ignoring_key(row).returning(jobs.c.id)
                    ).scalar_one_or_none()
                    if inserted is None:
                        # A committed job holds the key (Postgres: the statement waited for it).
                        existing = self._job_by_key(conn, owner, idempotency_key)
                        if existing.request_hash != digest:
                            raise IdempotencyConflict(idempotency_key, existing.id)
                        return existing, False
                self._add_event(conn, row["id"], now, "status", {"status": "queued"}, seq=1)
                return self._get(conn, row["id"]), True
        except StoreBusy:
            if idempotency_key is not None and self._dialect == "postgresql":
                # Only the keyed insert can wait on a row lock in this transaction.
                raise IdempotencyInProgress(idempotency_key) from None
            raise

    @staticmethod
    def _owns_batch(conn: Connection, batch_id: str, owner: str) -> bool:
        found = select(batches.c.id).where(batches.c.id == batch_id, batches.c.owner == owner)
        return conn.execute(found).first() is not None

    def _insert_ignoring_key(self, row: dict[str, Any]) -> Any:
        key_columns = [jobs.c.owner, jobs.c.idempotency_key]
        if self._dialect == "postgresql":
            return postgresql.insert(jobs).values(row).on_conflict_do_nothing(index_elements=key_columns)
        if self._dialect == "sqlite":
            return sqlite_dialect.insert(jobs).values(row).on_conflict_do_nothing(index_elements=key_columns)
        raise NotImplementedError(f"the job store supports sqlite and postgresql, not {self._dialect}")

    def _new_job_row(
        self,
        owner: str,
        kind: str,
        body: dict[str, Any],
        digest: str,
        now: datetime,
        *,
        max_attempts: int,
        batch_index: int = 0,
    ) -> dict[str, Any]:
        return {
            "id": uuid.uuid4().hex,
            "owner": owner,
            "kind": kind,
            "status": "queued",
            "stage": "queued",
            "request": body,
            "request_hash": digest,
            "attempts": 0,
            "max_attempts": max_attempts,
            "cancel_requested": False,
            "batch_index": batch_index,
            "event_seq": 1,
            "created_at": now,
            "updated_at": now,
            "queued_at": now,
        }

    def _job_by_key(self, conn: Connection, owner: str, key: str) -> Job:
        found = conn.execute(
            select(jobs).where(jobs.c.owner == owner, jobs.c.idempotency_key == key)
        ).mappings()
        return _job_from_row(found.one())

    def _get(self, conn: Connection, job_id: str, *, lock: bool = False) -> Job:
        query = select(jobs).where(jobs.c.id == job_id)
        if lock:
            query = query.with_for_update()
        return _job_from_row(conn.execute(query).mappings().one())

    def _find(self, conn: Connection, job_id: str, owner: str | None, *, lock: bool = False) -> Job | None:
        query = select(jobs).where(jobs.c.id == job_id)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).mappings().one_or_none()
        return None if row is None else _job_from_row(row)

    def get_job(self, job_id: str, owner: str) -> Job | None:
        """The job, or None if it does not exist or belongs to another owner."""
        with self._read() as conn:
            return self._find(conn, job_id, owner)

    def load_job(self, job_id: str) -> Job | None:
        """The job whoever owns it: for workers and the supervisor, never for API callers."""
        with self._read() as conn:
            return self._find(conn, job_id, None)

    def list_jobs(
        self, owner: str, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[Job], str | None]:
        """One page of the owner's jobs, newest first, and the cursor of the next page (or None).

        Keyset pagination on ``(created_at, id)``: pages neither skip nor repeat jobs when new
        ones arrive between requests.
        """
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit must be between 1 and 1000, got {limit}")
        query = select(jobs).where(jobs.c.owner == owner)
        if cursor is not None:
            created_at, job_id = _decode_cursor(cursor)
            query = query.where(
                or_(
                    jobs.c.created_at < created_at,
                    and_(jobs.c.created_at == created_at, jobs.c.id < job_id),
                )
            )
        query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)
        with self._read() as conn:
            page = [_job_from_row(row) for row in conn.execute(query).mappings()]
        if len(page) <= limit:
            return page, None
        page = page[:limit]
        return page, _encode_cursor(page[-1].created_at, page[-1].id)

    def counts_by_status(self) -> dict[JobStatus, int]:
        """How many jobs are in each status (every status present, zeros included)."""
        counts: dict[JobStatus, int] = dict.fromkeys(JOB_STATUSES, 0)
        with self._read() as conn:
            for status, count in conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)):
                counts[status] = count
        return counts

    # --- jobs: the worker's side ----------------------------------------------------------

    def claim_next(
        self, worker_id: str, lease_seconds: float, kinds: Iterable[JobKind] | None = None
    ) -> Job | None:
        """Lease the next job to ``worker_id``, or None when there is nothing to run.

        Jobs whose worker died (running, lease expired) come first, oldest first, then queued
        jobs, oldest first. Each claim counts an attempt. A dead job that has used all its
        attempts is failed with ``attempts_exhausted`` (and one cancelled while its worker was
        dying becomes ``cancelled``) instead of being claimed, and the search goes on.
        """
        _check_key("worker_id", worker_id)
        wanted = None if kinds is None else list(kinds)
        if not self._anything_to_claim(wanted):
            return None  # idle polling stays off the write lock
        with self._write(durable=False) as conn:
            now = self._clock()
            while True:
                expired = self._expired_query(now, wanted).limit(1)
                row = conn.execute(expired).mappings().one_or_none()
                if row is not None:
                    job = _job_from_row(row)
                    if job.cancel_requested or job.attempts >= job.max_attempts:
                        self._settle_dead(conn, job, now)
                        continue
                    return self._lease(conn, job, worker_id, lease_seconds, now)
                queued = (
                    select(jobs)
                    .where(jobs.c.status == "queued")
                    .order_by(jobs.c.created_at, jobs.c.batch_index, jobs.c.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                if wanted is not None:
                    queued = queued.where(jobs.c.kind.in_(wanted))
                row = conn.execute(queued).mappings().one_or_none()
                if row is None:
                    return None
                return self._lease(conn, _job_from_row(row), worker_id, lease_seconds, now)

    def _anything_to_claim(self, kinds: list[JobKind] | None) -> bool:
        now = self._clock()
        claimable = or_(
            jobs.c.status == "queued", and_(jobs.c.status == "running", jobs.c.lease_expires_at < now)
        )
        query = select(jobs.c.id).where(claimable)
        if kinds is not None:
            query = query.where(jobs.c.kind.in_(kinds))
        with self._read() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def claim(self, job_id: str, worker_id: str, lease_seconds: float) -> Job | None:
        """Lease one given job (a Celery task names its job), or None if it is not claimable.

        Claimable means queued, or running with an expired lease; a job another worker holds,
        or a terminal one, answers None (a redelivered task then has nothing to do).
        """
        _check_key("worker_id", worker_id)
        with self._write(durable=False) as conn:
            now = self._clock()
            job = self._find(conn, job_id, None, lock=True)
            if job is None:
                return None
            expired = job.status == "running" and (job.lease_expires_at is None or job.lease_expires_at < now)
            if expired and (job.cancel_requested or job.attempts >= job.max_attempts):
                self._settle_dead(conn, job, now)
                return None
            if job.status != "queued" and not expired:
                return None
            return self._lease(conn, job, worker_id, lease_seconds, now)

    def _expired_query(self, now: datetime, kinds: list[JobKind] | None) -> Any:
        query = (
            select(jobs)
            .where(jobs.c.status == "running", jobs.c.lease_expires_at < now)
            .order_by(jobs.c.created_at, jobs.c.batch_index, jobs.c.id)
            .with_for_update(skip_locked=True)
        )
        if kinds is not None:
            query = query.where(jobs.c.kind.in_(kinds))
        return query

    def _lease(self, conn: Connection, job: Job, worker_id: str, lease_seconds: float, now: datetime) -> Job:
        attempts = job.attempts + 1
        values: dict[str, Any] = {
            "status": "running",
            "attempts": attempts,
            "lease_owner": worker_id,
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
            "updated_at": now,
            "running_at": job.timestamps.get("running", now),
        }
        values["event_seq"] = jobs.c.event_seq + 1
        query = update(jobs).where(jobs.c.id == job.id).values(values).returning(jobs)
        row = conn.execute(query).mappings().one()
        leased = _job_from_row(row)
        data = {"status": "running", "attempts": attempts, "worker": worker_id}
        self._insert_event(conn, job.id, row["event_seq"], now, "status", data)
        return leased

    def _settle_dead(self, conn: Connection, job: Job, now: datetime) -> Job:
        """End a job whose worker died: cancelled if asked to, failed if out of attempts."""
        if job.cancel_requested:
            return self._end(conn, job, "cancelled", now, result=job.result, release=True)
        n = job.attempts
        error = {
            "code": "attempts_exhausted",
            "message": f"the job's worker died {n} time{'s' if n != 1 else ''} (its lease expired "
            f"without a heartbeat); a job is tried at most {job.max_attempts} times",
        }
        return self._end(conn, job, "failed", now, result=job.result, error=error, release=True)

    def _end(
        self,
        conn: Connection,
        job: Job,
        status: TerminalStatus,
        now: datetime,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
        release: bool = False,
    ) -> Job:
        self._end_rows(conn, job, status, now, result=result, error=error, release=release)
        return self._get(conn, job.id)

    def _end_rows(
        self,
        conn: Connection,
        job: Job,
        status: TerminalStatus,
        now: datetime,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
        release: bool = False,
        events: Sequence[tuple[EventType, Mapping[str, Any]]] = (),
    ) -> None:
        """The job's end in two statements: its row (with room for ``events`` and the final
        status event in its event sequence), then those events in one insert."""
        # A worker that finishes stays recorded as lease_owner, so that it can repeat its
        # finish; a dead worker is released, so that a late finish of its own is refused.
        values: dict[str, Any] = {
            "status": status,
            "result": result,
            "error": error,
            "lease_expires_at": None,
            "updated_at": now,
            "finished_at": now,
            _STATUS_AT[status]: now,
            "stage": "done",  # whatever stage it was in has ended with it
        }
        if release:
            values["lease_owner"] = None
        values["event_seq"] = jobs.c.event_seq + len(events) + 1
        last = conn.execute(
            update(jobs).where(jobs.c.id == job.id).values(values).returning(jobs.c.event_seq)
        ).scalar_one()
        data: dict[str, Any] = {"status": status}
        if error is not None:
            data["error"] = error
        self._insert_events(conn, job.id, last, now, [*events, ("status", data)])

    def heartbeat(self, job_id: str, worker_id: str, lease_seconds: float) -> bool:
        """Extend the lease; False means stop: the lease is lost, or cancel was requested.

        A lease that ran out but that nobody took over yet is still this worker's to extend.
        After a False for cancellation the worker still holds the lease, so it can
        :meth:`finish` as ``cancelled`` with its best result.
        """
        with self._write(durable=False) as conn:
            now = self._clock()
            done = conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.status == "running",
                    jobs.c.lease_owner == worker_id,
                    jobs.c.cancel_requested.is_(False),
                )
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
            )
            return done.rowcount == 1

    def finish(
        self,
        job_id: str,
        worker_id: str,
        status: TerminalStatus,
        result: Any = None,
        error: Mapping[str, Any] | None = None,
        events: Sequence[tuple[EventType, Mapping[str, Any]]] = (),
    ) -> bool:
        """End a running job; only its lease holder may, and only once.

        Answers True when the job now stands in ``status`` because of this worker (also for a
        repeated call, so a worker may retry a finish whose answer it lost); False when the
        worker does not hold the job (another took it over) or it already ended otherwise.
        ``events`` (the job's last stages and log lines, not yet written) go in the same
        transaction, before the final status event: a short job costs one commit at its end.
        """
        _check_events(events)
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"a job finishes as one of {sorted(TERMINAL_STATUSES)}, not {status!r}")
        checked = _check_error(error)
        if status == "failed" and checked is None:
            raise ValueError("a failed job needs an error {'code': ..., 'message': ...}")
        with self._write(durable=False) as conn:
            job = self._find(conn, job_id, None, lock=True)
            if job is None or job.lease_owner != worker_id:
                return False
            if job.is_terminal:
                return job.status == status
            if job.status != "running":
                return False
            self._end_rows(conn, job, status, self._clock(), result=result, error=checked, events=events)
            return True

    def set_stage(self, job_id: str, stage: str) -> bool:
        """Record the stage a running job reached (and tell SSE listeners); False once it ended."""
        _check_key("stage", stage)
        with self._write(durable=False) as conn:
            now = self._clock()
            seq = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status.in_(ACTIVE_STATUSES))
                .values(stage=stage, updated_at=now, event_seq=jobs.c.event_seq + 1)
                .returning(jobs.c.event_seq)
            ).scalar_one_or_none()
            if seq is None:
                return False
            self._insert_event(conn, job_id, seq, now, "stage", {"stage": stage})
            return True

    def append_event(self, job_id: str, type: EventType, data: Mapping[str, Any]) -> int | None:
        """Append one event; answer its sequence number, or None if the job does not exist."""
        seqs = self.append_events(job_id, [(type, data)])
        return seqs[0] if seqs else None

    def append_events(self, job_id: str, items: Sequence[tuple[EventType, Mapping[str, Any]]]) -> list[int]:
        """Append several events in one transaction (solver logs come in bursts).

        A ``stage`` event among them also moves the job's ``stage`` to the last one; those
        are appended only while the job is active (nothing is, once it ended)."""
        _check_events(items)
        if not items:
            return []
        with self._write(durable=False) as conn:
            return self._append(conn, job_id, self._clock(), items)

    def _append(
        self,
        conn: Connection,
        job_id: str,
        now: datetime,
        items: Sequence[tuple[EventType, Mapping[str, Any]]],
    ) -> list[int]:
        if not items:
            return []
        stages = [str(data["stage"]) for kind, data in items if kind == "stage"]
        query = update(jobs).where(jobs.c.id == job_id)
        values: dict[str, Any] = {"event_seq": jobs.c.event_seq + len(items)}
        if stages:
            query = query.where(jobs.c.status.in_(ACTIVE_STATUSES))
            values.update(stage=stages[-1], updated_at=now)
        last = conn.execute(query.values(values).returning(jobs.c.event_seq)).scalar_one_or_none()
        if last is None:
            return []
        return self._insert_events(conn, job_id, last, now, items)

    @staticmethod
    def _insert_events(
        conn: Connection,
        job_id: str,
        last: int,
        now: datetime,
        items: Sequence[tuple[EventType, Mapping[str, Any]]],
    ) -> list[int]:
        """Insert ``items`` as the job's events numbered up to ``last`` (already reserved in
        its ``event_seq``), in one statement; answer their numbers."""
        seqs = list(range(last - len(items) + 1, last + 1))
        rows = [
            {"job_id": job_id, "seq": seq, "ts": now, "type": kind, "data": dict(data)}
            for seq, (kind, data) in zip(seqs, items, strict=True)
        ]
        conn.execute(insert(job_events), rows)
        return seqs

    def events_after(self, job_id: str, seq: int = 0, limit: int = 100) -> list[JobEvent]:
        """The job's events with a sequence number above ``seq``, in order (at most ``limit``)."""
        query = (
            select(job_events)
            .where(job_events.c.job_id == job_id, job_events.c.seq > seq)
            .order_by(job_events.c.seq)
            .limit(limit)
        )
        with self._read() as conn:
            return [
                JobEvent(job_id=r["job_id"], seq=r["seq"], ts=r["ts"], type=r["type"], data=r["data"])
                for r in conn.execute(query).mappings()
            ]

    def _add_event(
        self,
        conn: Connection,
        job_id: str,
        now: datetime,
        kind: EventType,
        data: dict[str, Any],
        *,
        seq: int | None = None,
    ) -> None:
        if seq is None:
            seq = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(event_seq=jobs.c.event_seq + 1)
                .returning(jobs.c.event_seq)
            ).scalar_one()
        self._insert_event(conn, job_id, seq, now, kind, data)

    @staticmethod
    def _insert_event(
        conn: Connection, job_id: str, seq: int, now: datetime, kind: EventType, data: dict[str, Any]
    ) -> None:
        conn.execute(insert(job_events).values(job_id=job_id, seq=seq, ts=now, type=kind, data=data))

    # --- jobs: the client's side while running --------------------------------------------

    def request_cancel(self, job_id: str, owner: str) -> Job | None:
        """Cancel a job: at once if no worker holds it, else ask its worker to stop.

        Queued or waiting for answers: ``cancelled`` now. Running: ``cancel_requested`` is set;
        the worker's next heartbeat answers False, and the worker finishes as ``cancelled``
        keeping its best result. Terminal: unchanged. None if not the owner's job.
        """
        with self._write() as conn:
            job = self._find(conn, job_id, owner, lock=True)
            if job is None or job.is_terminal or job.cancel_requested:
                return job
            now = self._clock()
            if job.status in ("queued", "needs_input"):
                return self._end(conn, job, "cancelled", now)
            conn.execute(
                update(jobs).where(jobs.c.id == job_id).values(cancel_requested=True, updated_at=now)
            )
            self._add_event(conn, job_id, now, "status", {"status": job.status, "cancel_requested": True})
            return self._get(conn, job_id)

    def set_needs_input(self, job_id: str, worker_id: str, questions: Any) -> bool:
        """The lease holder parks the job until the client answers ``questions`` (False if not held)."""
        with self._write(durable=False) as conn:
            job = self._find(conn, job_id, None, lock=True)
            if job is None or job.status != "running" or job.lease_owner != worker_id:
                return False
            now = self._clock()
            values: dict[str, Any] = {
                "status": "needs_input",
                "questions": questions,
                "lease_owner": None,
                "lease_expires_at": None,
                "updated_at": now,
                "needs_input_at": job.timestamps.get("needs_input", now),
            }
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(values))
            self._add_event(conn, job_id, now, "status", {"status": "needs_input", "questions": questions})
            return True

    def answer(self, job_id: str, owner: str, answers: Mapping[str, Any]) -> Job | None:
        """Store the client's answers in the request (merged into ``request["answers"]``) and requeue.

        The job's attempts start again from zero: the answered job is a new run, and a worker
        crash before the question must not count against it. Raises :class:`NotAwaitingInput`
        unless the job is ``needs_input``; None if not the owner's job.
        """
        with self._write() as conn:
            job = self._find(conn, job_id, owner, lock=True)
            if job is None:
                return None
            if job.status != "needs_input":
                raise NotAwaitingInput(job_id, job.status)
            now = self._clock()
            request = dict(job.request)
            earlier = request.get("answers")
            request["answers"] = {**(earlier if isinstance(earlier, Mapping) else {}), **answers}
            values: dict[str, Any] = {
                "status": "queued",
                "stage": "queued",
                "request": request,
                "attempts": 0,
                "updated_at": now,
            }
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(values))
            self._add_event(conn, job_id, now, "status", {"status": "queued", "answered": sorted(answers)})
            return self._get(conn, job_id)

    # --- the supervisor's sweep -----------------------------------------------------------

    def requeue_expired(self, now: datetime | None = None) -> list[Job]:
        """Put every running job whose lease expired back in the queue; answer them as changed.

        A job out of attempts fails with ``attempts_exhausted`` instead, and one whose cancel
        was requested becomes ``cancelled``. The attempt was counted when the job was claimed,
        so requeueing does not count another.
        """
        changed: list[Job] = []
        with self._write(durable=False) as conn:
            moment = now or self._clock()
            rows = conn.execute(self._expired_query(moment, None)).mappings().all()
            for row in rows:
                job = _job_from_row(row)
                if job.cancel_requested or job.attempts >= job.max_attempts:
                    changed.append(self._settle_dead(conn, job, moment))
                    continue
                values = {
                    "status": "queued",
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "updated_at": moment,
                }
                conn.execute(update(jobs).where(jobs.c.id == job.id).values(values))
                data = {"status": "queued", "attempts": job.attempts, "reason": "lease_expired"}
                self._add_event(conn, job.id, moment, "status", data)
                changed.append(self._get(conn, job.id))
        return changed

    # --- batches --------------------------------------------------------------------------

    def create_batch(
        self,
        owner: str,
        lines: Sequence[BatchLine],
        *,
        input_file_name: str | None = None,
        max_attempts: int = 3,
    ) -> BatchStatus:
        """Persist a batch and one queued job per line, all in one transaction."""
        _check_key("owner", owner)
        _check_key("input_file_name", input_file_name)
        if not lines:
            raise ValueError("a batch needs at least one line")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        seen: set[str] = set()
        for number, line in enumerate(lines, start=1):
            _check_kind(line.kind)
            _check_key(f"custom_id of line {number}", line.custom_id)
            if line.custom_id in seen:
                raise ValueError(f"line {number}: custom_id {line.custom_id!r} is used twice in the batch")
            seen.add(line.custom_id)
        now = self._clock()
        batch_id = uuid.uuid4().hex
        rows = []
        for index, line in enumerate(lines):
            body = dict(line.request)
            digest = request_hash(line.kind, body)
            row = self._new_job_row(
                owner, line.kind, body, digest, now, max_attempts=max_attempts, batch_index=index
            )
            row.update(batch_id=batch_id, custom_id=line.custom_id)
            rows.append(row)
        events = [
            {"job_id": row["id"], "seq": 1, "ts": now, "type": "status", "data": {"status": "queued"}}
            for row in rows
        ]
        with self._write() as conn:
            conn.execute(
                insert(batches).values(
                    id=batch_id, owner=owner, input_file_name=input_file_name, created_at=now
                )
            )
            conn.execute(insert(jobs), rows)
            conn.execute(insert(job_events), events)
            status = self._batch_status(conn, batch_id, owner)
        assert status is not None
        return status

    def batch_status(self, batch_id: str, owner: str) -> BatchStatus | None:
        """The batch with counts and timestamps derived from its jobs; None if not the owner's."""
        with self._read() as conn:
            return self._batch_status(conn, batch_id, owner)

    def _batch_status(self, conn: Connection, batch_id: str, owner: str) -> BatchStatus | None:
        batch = (
            conn.execute(select(batches).where(batches.c.id == batch_id, batches.c.owner == owner))
            .mappings()
            .one_or_none()
        )
        if batch is None:
            return None
        by_status: dict[str, int] = dict.fromkeys(JOB_STATUSES, 0)
        first_start: datetime | None = None
        last_end: datetime | None = None
        aggregate = (
            select(jobs.c.status, func.count(), func.min(jobs.c.running_at), func.max(jobs.c.finished_at))
            .where(jobs.c.batch_id == batch_id)
            .group_by(jobs.c.status)
        )
        for status, count, started, ended in conn.execute(aggregate):
            by_status[status] = count
            if started is not None and (first_start is None or started < first_start):
                first_start = started
            if ended is not None and (last_end is None or ended > last_end):
                last_end = ended
        total = sum(by_status.values())
        done = sum(by_status[s] for s in TERMINAL_STATUSES)
        state: BatchState
        if done == total:
            state = "completed"
        elif first_start is not None or done:
            state = "in_progress"
        else:
            state = "queued"
        counts = {
            "total": total,
            "completed": by_status["succeeded"],
            "failed": by_status["failed"],
            "cancelled": by_status["cancelled"],
            **by_status,
        }
        return BatchStatus(
            id=batch["id"],
            owner=batch["owner"],
            status=state,
            input_file_name=batch["input_file_name"],
            total=total,
            counts=counts,
            created_at=batch["created_at"],
            in_progress_at=first_start,
            completed_at=last_end if state == "completed" else None,
        )

    def batch_results(self, batch_id: str, owner: str, *, page_size: int = 500) -> Iterator[Job] | None:
        """The batch's jobs in input order (each carries its custom_id); None if not the owner's.

        The iterator reads a page at a time, each in its own short transaction, so a large
        batch neither sits in memory nor holds a connection between pages.
        """
        with self._read() as conn:
            if not self._owns_batch(conn, batch_id, owner):
                return None
        return self._batch_pages(batch_id, page_size)

    def _batch_pages(self, batch_id: str, page_size: int) -> Iterator[Job]:
        after = -1
        while True:
            query = (
                select(jobs)
                .where(jobs.c.batch_id == batch_id, jobs.c.batch_index > after)
                .order_by(jobs.c.batch_index)
                .limit(page_size)
            )
            with self._read() as conn:
                page = [_job_from_row(row) for row in conn.execute(query).mappings()]
            yield from page
            if len(page) < page_size:
                return
            after = page[-1].batch_index

    # --- API keys -------------------------------------------------------------------------

    def create_api_key(self, name: str) -> tuple[str, str]:
        """Make a key; answer ``(id, plaintext)``. Only the key's SHA-256 is stored.

        The plaintext reads ``osk_<id>_<secret>``: the id finds the row without a lookup on
        the secret, and the hash is then compared in constant time.
        """
        _check_key("name", name)
        key_id = secrets.token_hex(8)
        plaintext = f"{API_KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        with self._write() as conn:
            conn.execute(
                insert(api_keys).values(
                    id=key_id, name=name, key_hash=_hash_key(plaintext), created_at=self._clock()
                )
            )
        return key_id, plaintext

    def verify_api_key(self, plaintext: str) -> str | None:
        """The id of the (unrevoked) key ``plaintext`` is, or None."""
        prefix, _, rest = plaintext.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != API_KEY_PREFIX or not key_id or not secret or len(plaintext) > 200:
            return None
        with self._read() as conn:
            row = (
                conn.execute(
                    select(api_keys.c.key_hash).where(
                        api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)
                    )
                )
                .scalars()
                .one_or_none()
            )
        if row is None or not hmac.compare_digest(str(row), _hash_key(plaintext)):
            return None
        return key_id

    def revoke_api_key(self, key_id: str) -> bool:
        """Stop accepting a key; False if there is no such key or it was already revoked."""
        with self._write() as conn:
            done = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=self._clock())
            )
            return done.rowcount == 1


def _install_sqlite_hooks(engine: Engine, busy_timeout_s: float) -> None:
    """WAL, busy_timeout, foreign keys and durable commits on each connection; our own BEGIN."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        conn = cast(sqlite3.Connection, dbapi_connection)
        # Take BEGIN away from the sqlite3 module, which would issue a deferred one itself.
        conn.isolation_level = None
        cursor = conn.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            # FULL: a commit is on disk before create_job returns, power loss included
            # (the workers' own writes choose NORMAL per transaction: see JobStore._write).
            cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if not conn.get_execution_options().get("optscribe_write", False):
            conn.exec_driver_sql("BEGIN")
            return
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        raw = cast(sqlite3.Connection, dbapi_connection)
        level = "FULL" if conn.get_execution_options().get("optscribe_durable", True) else "NORMAL"
        info = conn.connection.info
        if info.get("synchronous") != level:  # in WAL mode NORMAL skips the fsync at commit
            raw.execute(f"PRAGMA synchronous={level}")
            info["synchronous"] = level
        _begin_immediate(raw, busy_timeout_s)


def _begin_immediate(conn: sqlite3.Connection, timeout_s: float) -> None:
    """``BEGIN IMMEDIATE``, retried every millisecond or so until ``timeout_s`` has passed.

    SQLite's own busy handler backs off to sleeps of 100 ms, so a process that writes in a
    tight loop (a worker claiming and finishing small jobs) takes the lock again and again
    while the others sleep: in a test, two processes out of three claimed nothing at all.
    Short jittered retries give every waiting writer a fair chance at each gap between
    transactions. The busy handler stays on for everything else (reads, commits).
    """
    conn.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + timeout_s
        delay = 0.0002
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreBusy(f"the SQLite write lock stayed taken for {timeout_s:g} s") from exc
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.002)
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
