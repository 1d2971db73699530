"""The job store against a real SQLite file (and a real Postgres when one is configured).

Every test runs on SQLite in ``tmp_path``. Set ``OPTSCRIBE_TEST_POSTGRES_URL`` to a server
where the user may create databases (``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
and each test also runs on Postgres, in a database of its own that is dropped afterwards.
Time is a fake clock, so leases expire exactly when a test says.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, text

from app.jobs import (
    BatchLine,
    IdempotencyConflict,
    IdempotencyInProgress,
    InvalidCursor,
    Job,
    JobKind,
    JobStore,
    NotAwaitingInput,
    StoreBusy,
    request_hash,
    sqlite_url,
)
from app.jobs.store import jobs as jobs_table

POSTGRES_URL = os.environ.get("OPTSCRIBE_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", "postgres"] if POSTGRES_URL else ["sqlite"]
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass
class Env:
    """One database for a test: its URL, its clock, and stores opened on it (closed at the end)."""

    url: str
    backend: str
    clock: FakeClock = field(default_factory=FakeClock)
    opened: list[JobStore] = field(default_factory=list)

    def open(self, **options: Any) -> JobStore:
        options.setdefault("clock", self.clock)
        store = JobStore(self.url, **options)
        self.opened.append(store)
        return store


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    if request.param == "sqlite":
        setup = Env(sqlite_url(tmp_path / "data" / "jobs.sqlite3"), "sqlite")
        yield setup
        for store in setup.opened:
            store.close()
        return
    name = f"optscribe_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        setup = Env(admin.url.set(database=name).render_as_string(hide_password=False), "postgres")
        yield setup
        for store in setup.opened:
            store.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def store(env: Env) -> JobStore:
    return env.open()


def test_postgres_runs_when_configured() -> None:
    if not POSTGRES_URL:
        pytest.skip("set OPTSCRIBE_TEST_POSTGRES_URL to run every store test on Postgres too")
    assert "postgres" in BACKENDS


def solve_request(n: int = 0) -> dict[str, Any]:
    return {"model": {"schema": "optscribe.model/v1", "name": f"m{n}"}, "options": {"time_limit": 5}}


def running(
    store: JobStore, worker: str = "w1", lease: float = 30, kinds: list[JobKind] | None = None
) -> Job:
    job = store.claim_next(worker, lease, kinds)
    assert job is not None
    return job


# --- construction -------------------------------------------------------------------------


def test_sqlite_file_is_created_under_its_data_dir_with_wal_and_foreign_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "deep" / "data"
    with JobStore.in_data_dir(data_dir) as store:
        assert store.dialect == "sqlite"
        store.ping()
        job, _ = store.create_job("anonymous", "solve", solve_request())
    path = data_dir / "jobs.sqlite3"
    assert path.is_file()
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert raw.execute("SELECT id FROM jobs").fetchall() == [(job.id,)]
    finally:
        raw.close()
    with JobStore(path) as store, store._read() as conn:  # below the API: the connection's pragmas
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000


def test_what_clients_hand_over_is_fsynced_and_the_workers_writes_are_not(tmp_path: Path) -> None:
    """SQLite in WAL mode: jobs, batches, answers and cancels commit with synchronous=FULL
    (on disk, power loss included, before the API answers); a worker's claim, events and
    finish with NORMAL (safe from any process crash; a power loss can only send the job round
    again)."""
    from sqlalchemy import event

    levels: list[tuple[str, str]] = []
    with JobStore.in_data_dir(tmp_path) as store:

        def on_commit(conn: Any) -> None:
            if conn.get_execution_options().get("optscribe_write"):
                levels.append((str(conn.connection.info.get("synchronous")), str(write_caller())))

        event.listen(store._engine, "commit", on_commit)
        job, _ = store.create_job("me", "solve", solve_request())
        running(store)
        store.append_events(job.id, [("stage", {"stage": "solving"}), ("log", {"line": "x"})])
        assert store.finish(job.id, "w1", "succeeded", result={"status": "optimal"})
        other, _ = store.create_job("me", "solve", solve_request())
        store.request_cancel(other.id, "me")
    assert levels == [
        ("FULL", "create_job"),
        ("NORMAL", "claim_next"),
        ("NORMAL", "append_events"),
        ("NORMAL", "finish"),
        ("FULL", "create_job"),
        ("FULL", "request_cancel"),
    ]


def write_caller() -> str | None:
    """Inside a store transaction: the public JobStore method that opened it with ``_write``
    (None outside a write)."""
    import traceback

    names = [f.name for f in traceback.extract_stack()]
    if "_write" not in names:
        return None
    return [n for n in names[: names.index("_write")] if not n.startswith("_")][-1]


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="SQLite file"):
        JobStore(url)


def test_times_are_aware_utc_and_naive_clocks_are_refused(tmp_path: Path) -> None:
    with JobStore(tmp_path / "j.db") as store:
        job, _ = store.create_job("a", "solve", solve_request())
        assert job.created_at.tzinfo is UTC
    with JobStore(tmp_path / "j.db", clock=lambda: datetime(2030, 1, 1)) as store:
        with pytest.raises(Exception, match="aware datetimes only"):
            store.create_job("a", "solve", solve_request())


# --- transitions --------------------------------------------------------------------------


def test_queued_running_succeeded_with_a_timestamp_per_transition(env: Env, store: JobStore) -> None:
    job, created = store.create_job("key1", "solve", solve_request())
    assert created
    assert (job.status, job.stage, job.attempts, job.kind, job.owner) == (
        "queued",
        "queued",
        0,
        "solve",
        "key1",
    )
    assert job.timestamps == {"queued": T0} and job.created_at == T0 and job.finished_at is None

    t1 = env.clock.advance(5)
    claimed = running(store, "w1", lease=30)
    assert claimed.id == job.id
    assert (claimed.status, claimed.attempts, claimed.lease_owner) == ("running", 1, "w1")
    assert claimed.lease_expires_at == t1 + timedelta(seconds=30)
    assert claimed.timestamps == {"queued": T0, "running": t1}

    env.clock.advance(1)
    assert store.set_stage(job.id, "solving")
    t2 = env.clock.advance(2)
    assert store.finish(job.id, "w1", "succeeded", result={"status": "optimal", "objective": 3.0})
    done = store.get_job(job.id, "key1")
    assert done is not None
    assert (done.status, done.stage, done.result) == (
        "succeeded",
        "done",
        {"status": "optimal", "objective": 3.0},
    )
    assert done.timestamps == {"queued": T0, "running": t1, "succeeded": t2}
    assert done.finished_at == t2 and done.lease_expires_at is None and done.is_terminal

    statuses = [(e.type, e.data.get("status", e.data.get("stage"))) for e in store.events_after(job.id)]
    assert statuses == [
        ("status", "queued"),
        ("status", "running"),
        ("stage", "solving"),
        ("status", "succeeded"),
    ]


def test_failed_carries_its_error_and_needs_one(env: Env, store: JobStore) -> None:
    job, _ = store.create_job("a", "formalize", {"text": "maximize profit"})
    running(store)
    with pytest.raises(ValueError, match="needs an error"):
        store.finish(job.id, "w1", "failed")
    with pytest.raises(ValueError, match="code"):
        store.finish(job.id, "w1", "failed", error={"message": "no code"})
    with pytest.raises(ValueError, match="finishes as one of"):
        store.finish(job.id, "w1", "running")  # type: ignore[arg-type]
    t = env.clock.advance(3)
    error = {"code": "formalization_failed", "message": "the model never passed the checks"}
    assert store.finish(job.id, "w1", "failed", error=error)
    failed = store.load_job(job.id)
    assert failed is not None and failed.status == "failed" and failed.error == error
    assert failed.timestamps["failed"] == t
    assert store.events_after(job.id)[-1].data == {"status": "failed", "error": error}


def test_needs_input_then_answers_requeue_the_job_with_the_answers_in_its_request(
    env: Env, store: JobStore
) -> None:
    job, _ = store.create_job("a", "formalize", {"text": "plan the shifts"})
    running(store, "w1")
    questions = [{"id": "q1", "text": "How many nurses per shift?"}]
    assert not store.set_needs_input(job.id, "w2", questions)  # not the holder
    t1 = env.clock.advance(4)
    assert store.set_needs_input(job.id, "w1", questions)
    waiting = store.get_job(job.id, "a")
    assert waiting is not None
    assert (waiting.status, waiting.questions, waiting.lease_owner) == ("needs_input", questions, None)
    assert waiting.timestamps["needs_input"] == t1
    assert not store.heartbeat(job.id, "w1", 30)
    assert store.claim_next("w2", 30) is None  # parked jobs are not claimable

    queued, _ = store.create_job("a", "solve", solve_request())
    with pytest.raises(NotAwaitingInput):
        store.answer(queued.id, "a", {"q1": 3})
    assert store.answer(job.id, "someone-else", {"q1": 3}) is None
    env.clock.advance(10)
    answered = store.answer(job.id, "a", {"q1": 3})
    assert answered is not None
    assert answered.status == "queued" and answered.attempts == 0
    assert answered.request == {"text": "plan the shifts", "answers": {"q1": 3}}
    assert answered.request_hash == job.request_hash  # idempotent replays still match the original
    assert answered.timestamps["queued"] == T0  # first time entered

    again = store.claim_next("w3", 30, kinds=["formalize"])
    assert again is not None and again.id == job.id and again.attempts == 1
    assert again.timestamps["running"] < again.updated_at


def test_cancel_while_queued_is_immediate(env: Env, store: JobStore) -> None:
    job, _ = store.create_job("a", "solve", solve_request())
    assert store.request_cancel(job.id, "b") is None
    t = env.clock.advance(2)
    cancelled = store.request_cancel(job.id, "a")
    assert (
        cancelled is not None and cancelled.status == "cancelled" and cancelled.timestamps["cancelled"] == t
    )
    assert store.claim_next("w1", 30) is None


def test_cancel_while_running_stops_the_worker_at_its_heartbeat_and_keeps_its_best_result(
    env: Env, store: JobStore
) -> None:
    job, _ = store.create_job("a", "solve", solve_request())
    running(store, "w1")
    assert store.heartbeat(job.id, "w1", 30)
    asked = store.request_cancel(job.id, "a")
    assert asked is not None and asked.status == "running" and asked.cancel_requested
    assert not store.heartbeat(job.id, "w1", 30)  # the worker must stop
    best = {"status": "feasible", "objective": 10.0}
    t = env.clock.advance(1)
    assert store.finish(job.id, "w1", "cancelled", result=best)
    done = store.get_job(job.id, "a")
    assert done is not None and done.status == "cancelled" and done.result == best
    assert done.timestamps["cancelled"] == t
    assert [e.data.get("cancel_requested") for e in store.events_after(job.id)].count(True) == 1


def test_cancel_while_waiting_for_answers_is_immediate(store: JobStore) -> None:
    job, _ = store.create_job("a", "formalize", {"text": "x"})
    running(store)
    store.set_needs_input(job.id, "w1", ["?"])
    cancelled = store.request_cancel(job.id, "a")
    assert cancelled is not None and cancelled.status == "cancelled"


def test_terminal_states_are_final(env: Env, store: JobStore) -> None:
    job, _ = store.create_job("a", "solve", solve_request())
    running(store, "w1")
    assert store.finish(job.id, "w1", "succeeded", result={"objective": 1})
    before = store.get_job(job.id, "a")
    env.clock.advance(100)

    assert store.finish(job.id, "w1", "succeeded", result={"objective": 2})  # a repeat is acknowledged...
    assert not store.finish(job.id, "w1", "failed", error={"code": "x", "message": "y"})
    assert not store.finish(job.id, "w2", "cancelled")
    assert store.request_cancel(job.id, "a") == before
    assert not store.set_stage(job.id, "solving")
    assert not store.heartbeat(job.id, "w1", 30)
    assert store.claim_next("w2", 30) is None and store.claim(job.id, "w2", 30) is None
    assert store.requeue_expired(env.clock.advance(1000)) == []
    with pytest.raises(NotAwaitingInput):
        store.answer(job.id, "a", {"q": 1})
    assert store.get_job(job.id, "a") == before  # ...but nothing changed, the result included


def test_finish_by_a_worker_that_does_not_hold_the_lease_is_refused(store: JobStore) -> None:
    job, _ = store.create_job("a", "solve", solve_request())
    assert not store.finish(job.id, "w1", "succeeded")  # queued: nobody holds it
    running(store, "w1")
    assert not store.finish(job.id, "w2", "succeeded")
    assert not store.heartbeat(job.id, "w2", 30)
    assert not store.finish("no-such-job", "w1", "succeeded")
    current = store.load_job(job.id)
    assert current is not None and current.status == "running" and current.lease_owner == "w1"


# --- leases -------------------------------------------------------------------------------


def test_heartbeats_keep_the_lease(env: Env, store: JobStore) -> None:
    job, _ = store.create_job("a", "solve", solve_request())
    running(store, "w1", lease=10)
    for _ in range(5):
        env.clock.advance(8)
        assert store.heartbeat(job.id, "w1", 10)
    assert store.claim_next("w2", 10) is None
    assert store.requeue_expired() == []


def test_an_expired_lease_is_claimed_again_until_attempts_run_out(env: Env, store: JobStore) -> None:
    job, _ = store.create_job("a", "solve", solve_request(), max_attempts=3)
    first = running(store, "w1", lease=10)
    assert first.attempts == 1
    env.clock.advance(9)
    assert store.claim_next("w2", 10) is None  # still alive

    env.clock.advance(2)  # w1 died: no heartbeat for 11 s
    second = running(store, "w2", lease=10)
    assert (second.id, second.attempts, second.lease_owner) == (job.id, 2, "w2")
    assert not store.heartbeat(job.id, "w1", 10) and not store.finish(job.id, "w1", "succeeded")

    env.clock.advance(11)
    third = running(store, "w3", lease=10)
    assert third.attempts == 3
    t = env.clock.advance(11)
    assert store.claim_next("w4", 10) is None  # the third death exhausts the job
    failed = store.get_job(job.id, "a")
    assert failed is not None and failed.status == "failed" and failed.attempts == 3
    assert failed.error is not None and failed.error["code"] == "attempts_exhausted"
    assert "died 3 times" in failed.error["message"]
    assert failed.timestamps["failed"] == t and failed.lease_owner is None
    assert not store.finish(job.id, "w3", "succeeded")  # the last dead worker wakes up too late


def test_a_dead_job_out_of_attempts_does_not_hide_the_next_one(env: Env, store: JobStore) -> None:
    dead, _ = store.create_job("a", "solve", solve_request(1), max_attempts=1)
    running(store, "w1", lease=5)
    env.clock.advance(1)
    waiting, _ = store.create_job("a", "solve", solve_request(2))
    env.clock.advance(10)
    claimed = running(store, "w2")
    assert claimed.id == waiting.id
    gone = store.load_job(dead.id)
    assert gone is not None and gone.status == "failed" and "died 1 time " in gone.error["message"]  # type: ignore[index]


def test_a_running_job_whose_worker_dies_after_cancel_ends_cancelled(env: Env, store: JobStore) -> None:
    job, _ = store.create_job("a", "solve", solve_request())
    running(store, "w1", lease=5)
    store.request_cancel(job.id, "a")
    env.clock.advance(6)
    assert store.claim_next("w2", 5) is None
    ended = store.load_job(job.id)
    assert ended is not None and ended.status == "cancelled"


def test_the_sweep_requeues_expired_leases_and_fails_exhausted_ones(env: Env, store: JobStore) -> None:
    retry, _ = store.create_job("a", "solve", solve_request(1), max_attempts=2)
    env.clock.advance(0.001)
    last, _ = store.create_job("a", "solve", solve_request(2), max_attempts=1)
    env.clock.advance(0.001)
    alive, _ = store.create_job("a", "solve", solve_request(3))
    running(store, "w1", lease=5)
    running(store, "w2", lease=5)
    running(store, "w3", lease=60)
    changed = {job.id: job for job in store.requeue_expired(env.clock.advance(6))}
    assert set(changed) == {retry.id, last.id}
    assert changed[retry.id].status == "queued" and changed[retry.id].attempts == 1
    assert changed[retry.id].lease_owner is None
    assert changed[last.id].status == "failed" and changed[last.id].error["code"] == "attempts_exhausted"  # type: ignore[index]
    assert store.load_job(alive.id).status == "running"  # type: ignore[union-attr]
    again = running(store, "w4")
    assert again.id == retry.id and again.attempts == 2


def test_claim_of_a_named_job(env: Env, store: JobStore) -> None:
    job, _ = store.create_job("a", "solve", solve_request())
    assert store.claim("no-such-job", "w1", 10) is None
    assert store.claim(job.id, "w1", 10) is not None
    assert store.claim(job.id, "w2", 10) is None  # held
    env.clock.advance(11)
    taken = store.claim(job.id, "w2", 10)
    assert taken is not None and taken.attempts == 2 and taken.lease_owner == "w2"


def test_claims_respect_kinds_and_age(env: Env, store: JobStore) -> None:
    older, _ = store.create_job("a", "formalize", {"text": "x"})
    env.clock.advance(1)
    newer, _ = store.create_job("a", "solve", solve_request())
    assert running(store, kinds=["solve"]).id == newer.id
    assert store.claim_next("w1", 30, kinds=["solve"]) is None
    assert running(store).id == older.id


# --- idempotency --------------------------------------------------------------------------


def test_idempotency_same_key_same_body_returns_the_same_job(store: JobStore) -> None:
    first, created = store.create_job("a", "solve", solve_request(), idempotency_key="k1")
    again, created_again = store.create_job("a", "solve", solve_request(), idempotency_key="k1")
    assert created and not created_again and again == first
    other_owner, created_other = store.create_job("b", "solve", solve_request(), idempotency_key="k1")
    assert created_other and other_owner.id != first.id
    assert store.counts_by_status()["queued"] == 2


def test_idempotency_same_key_other_body_is_a_conflict(store: JobStore) -> None:
    first, _ = store.create_job("a", "solve", solve_request(1), idempotency_key="k1")
    with pytest.raises(IdempotencyConflict) as caught:
        store.create_job("a", "solve", solve_request(2), idempotency_key="k1")
    assert caught.value.job_id == first.id
    with pytest.raises(IdempotencyConflict):
        store.create_job("a", "formalize", solve_request(1), idempotency_key="k1")  # kind counts too
    assert store.counts_by_status()["queued"] == 1


def test_request_hash_ignores_key_order() -> None:
    assert request_hash("solve", {"a": 1, "b": [1, 2]}) == request_hash("solve", {"b": [1, 2], "a": 1})
    assert request_hash("solve", {"a": 1}) != request_hash("formalize", {"a": 1})


def test_concurrent_inserts_of_one_key_make_one_job(env: Env) -> None:
    stores = [env.open(), env.open()]
    for round_ in range(10):
        key = f"key-{round_}"
        barrier = threading.Barrier(2)
        outcomes: list[object] = [None, None]

        def submit(
            i: int, key: str = key, barrier: threading.Barrier = barrier, outcomes: list[object] = outcomes
        ) -> None:
            barrier.wait()
            try:
                outcomes[i] = stores[i].create_job("a", "solve", solve_request(), idempotency_key=key)
            except IdempotencyInProgress as exc:
                outcomes[i] = exc

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        made = [o for o in outcomes if isinstance(o, tuple)]
        assert [created for _, created in made].count(True) == 1, outcomes
        assert len({job.id for job, _ in made}) == 1
        assert all(isinstance(o, tuple | IdempotencyInProgress) for o in outcomes)
    assert stores[0].counts_by_status()["queued"] == 10


def _hold_uncommitted_job(url: str, key: str) -> tuple[Any, Any]:
    """Open a transaction that inserted a job with ``key`` and leave it uncommitted."""
    engine = create_engine(url)
    conn = engine.connect()
    tx = conn.begin()
    now = datetime.now(UTC)
    conn.execute(
        insert(jobs_table).values(
            id=uuid.uuid4().hex,
            owner="a",
            kind="solve",
            status="queued",
            stage="queued",
            request=solve_request(),
            request_hash=request_hash("solve", solve_request()),
            attempts=0,
            max_attempts=3,
            cancel_requested=False,
            idempotency_key=key,
            batch_index=0,
            event_seq=0,
            created_at=now,
            updated_at=now,
            queued_at=now,
        )
    )
    return engine, (conn, tx)


def test_a_key_whose_first_request_is_not_committed_yet(env: Env) -> None:
    """Postgres names the in-progress request (409); SQLite can only say the store is busy (503)."""
    store = env.open(idempotency_wait_s=0.3, busy_timeout_s=0.3)
    engine, (conn, tx) = _hold_uncommitted_job(env.url, "k1")
    try:
        expected = IdempotencyInProgress if env.backend == "postgres" else StoreBusy
        with pytest.raises(expected):
            store.create_job("a", "solve", solve_request(), idempotency_key="k1")
        assert store.get_job("anything", "a") is None  # readers are never blocked (WAL / MVCC)
        tx.commit()
    finally:
        conn.close()
        engine.dispose()
    job, created = store.create_job("a", "solve", solve_request(), idempotency_key="k1")
    assert not created and job.idempotency_key == "k1"


def test_a_held_sqlite_write_lock_makes_writers_busy_but_not_readers(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    with JobStore(path, busy_timeout_s=0.2) as store:
        job, _ = store.create_job("a", "solve", solve_request())
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreBusy):
                store.claim_next("w1", 30)
            assert store.get_job(job.id, "a") == job
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        assert store.claim_next("w1", 30) is not None


# --- exclusive claims under contention ----------------------------------------------------


def _claim_and_finish(store: JobStore, worker: str) -> list[str]:
    claimed = []
    while (job := store.claim_next(worker, 60)) is not None:
        claimed.append(job.id)
        assert store.finish(job.id, worker, "succeeded", result={"by": worker})
    return claimed


def _assert_each_claimed_once(store: JobStore, ids: list[str], claimed: list[str]) -> None:
    assert sorted(claimed) == sorted(ids)
    for job_id in ids:
        job = store.load_job(job_id)
        assert job is not None and job.status == "succeeded" and job.attempts == 1
        runs = [e for e in store.events_after(job_id) if e.data.get("status") == "running"]
        assert len(runs) == 1
        assert job.result == {"by": runs[0].data["worker"]}


def test_claims_are_exclusive_across_threads(env: Env, store: JobStore) -> None:
    ids = [store.create_job("a", "solve", solve_request(i))[0].id for i in range(200)]
    stores = [env.open() for _ in range(4)]
    results: list[list[str]] = [[] for _ in stores]
    barrier = threading.Barrier(len(stores))

    def work(i: int) -> None:
        barrier.wait()
        results[i] = _claim_and_finish(stores[i], f"thread-{i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _assert_each_claimed_once(store, ids, [job_id for part in results for job_id in part])
    assert sum(1 for part in results if part) >= 2


def _claim_in_process(url: str, worker: str, start: Any, out: Any) -> None:
    with JobStore(url) as store:
        start.wait()
        out.put(_claim_and_finish(store, worker))


def test_claims_are_exclusive_across_processes(env: Env) -> None:
    store = env.open(clock=lambda: datetime.now(UTC))  # the child processes' clock
    ids = [store.create_job("a", "solve", solve_request(i))[0].id for i in range(200)]
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(3)
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process, args=(env.url, f"proc-{i}", start, out)) for i in range(2)]
    for proc in procs:
        proc.start()
    try:
        start.wait(timeout=60)
        mine = _claim_and_finish(store, "main")
        theirs = [out.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
        out.close()
        out.join_thread()
    assert [proc.exitcode for proc in procs] == [0, 0]
    _assert_each_claimed_once(store, ids, mine + [job_id for part in theirs for job_id in part])
    print("claims per worker:", len(mine), [len(part) for part in theirs])
    assert all(theirs), "each process should have claimed some jobs"


# --- restart ------------------------------------------------------------------------------


def test_a_new_store_on_the_same_database_sees_every_job(env: Env) -> None:
    first = env.open()
    ids = [first.create_job("a", "solve", solve_request(i))[0].id for i in range(5)]
    held = running(first, "w-dead", lease=10)
    first.close()

    second = env.open()
    seen, _ = second.list_jobs("a", 100)
    assert sorted(job.id for job in seen) == sorted(ids)
    assert second.load_job(held.id).status == "running"  # type: ignore[union-attr]
    env.clock.advance(11)  # the old process's worker never heartbeats again
    finished = _claim_and_finish(second, "w-new")
    assert sorted(finished) == sorted(ids)
    assert second.load_job(held.id).attempts == 2  # type: ignore[union-attr]
    assert second.counts_by_status()["succeeded"] == 5


# --- events -------------------------------------------------------------------------------


def test_events_are_ordered_and_paged_by_sequence(env: Env, store: JobStore) -> None:
    job, _ = store.create_job("a", "solve", solve_request())
    running(store)
    assert store.set_stage(job.id, "solving")
    seqs = store.append_events(job.id, [("log", {"line": f"iteration {i}"}) for i in range(10)])
    assert seqs == list(range(4, 14))
    assert store.append_event(job.id, "log", {"line": "done"}) == 14
    assert store.append_event("no-such-job", "log", {}) is None
    with pytest.raises(ValueError, match="event type"):
        store.append_event(job.id, "noise", {})  # type: ignore[arg-type]

    collected = []
    after = 0
    while page := store.events_after(job.id, after, limit=4):
        collected.extend(page)
        after = page[-1].seq
    assert [e.seq for e in collected] == list(range(1, 15))
    assert [e.data["line"] for e in collected if e.type == "log"][:2] == ["iteration 0", "iteration 1"]


def test_concurrent_appends_get_distinct_consecutive_numbers(env: Env, store: JobStore) -> None:
    job, _ = store.create_job("a", "solve", solve_request())
    stores = [env.open() for _ in range(3)]

    def append(i: int) -> None:
        for n in range(20):
            stores[i].append_event(job.id, "log", {"writer": i, "n": n})

    threads = [threading.Thread(target=append, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = store.events_after(job.id, 0, limit=1000)
    assert [e.seq for e in events] == list(range(1, 62))
    for writer in range(3):
        assert [e.data["n"] for e in events if e.data.get("writer") == writer] == list(range(20))


# --- listing ------------------------------------------------------------------------------


def test_pagination_is_stable_and_per_owner(env: Env, store: JobStore) -> None:
    ids = []
    for i in range(23):
        if i % 3 == 0:
            env.clock.advance(1)  # several jobs share a created_at: the id breaks the tie
        ids.append(store.create_job("a", "solve", solve_request(i))[0].id)
        store.create_job("b", "solve", solve_request(i))
    made = [store.get_job(job_id, "a") for job_id in ids]
    expected = [
        job.id for job in sorted(filter(None, made), key=lambda j: (j.created_at, j.id), reverse=True)
    ]

    pages: list[list[str]] = []
    page, cursor = store.list_jobs("a", 5)
    pages.append([job.id for job in page])
    env.clock.advance(10)
    store.create_job("a", "solve", solve_request(99))  # arrives while the client is paging
    while cursor is not None:
        page, cursor = store.list_jobs("a", 5, cursor)
        pages.append([job.id for job in page])
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [job_id for p in pages for job_id in p] == expected

    with pytest.raises(InvalidCursor):
        store.list_jobs("a", 5, "not-a-cursor")
    with pytest.raises(ValueError):
        store.list_jobs("a", 0)
    assert store.get_job(ids[0], "b") is None and store.get_job(ids[0], "a") is not None


def test_counts_by_status_has_every_status(store: JobStore) -> None:
    assert set(store.counts_by_status().values()) == {0}
    for i in range(3):
        store.create_job("a", "solve", solve_request(i))
    job = running(store)
    store.finish(job.id, "w1", "succeeded")
    counts = store.counts_by_status()
    assert counts == {
        "queued": 2,
        "running": 0,
        "needs_input": 0,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 0,
    }


# --- batches ------------------------------------------------------------------------------


def test_a_batch_runs_to_completion_with_counts_and_timestamps(env: Env, store: JobStore) -> None:
    lines = [BatchLine(f"line-{i}", "solve", solve_request(i)) for i in range(5)]
    batch = store.create_batch("a", lines, input_file_name="problems.jsonl")
    assert (batch.status, batch.total, batch.input_file_name) == ("queued", 5, "problems.jsonl")
    assert batch.counts["total"] == 5 and batch.counts["queued"] == 5 and batch.counts["completed"] == 0
    assert batch.timestamps == {"created": T0}
    assert store.batch_status(batch.id, "b") is None and store.batch_results(batch.id, "b") is None

    t1 = env.clock.advance(1)
    first = running(store, "w1")
    assert first.custom_id == "line-0"  # input order
    store.finish(first.id, "w1", "succeeded", result={"objective": 0})
    env.clock.advance(1)
    second = running(store, "w1")
    store.finish(second.id, "w1", "failed", error={"code": "solver_error", "message": "boom"})
    middle = store.batch_status(batch.id, "a")
    assert middle is not None and middle.status == "in_progress" and middle.in_progress_at == t1
    assert (middle.counts["completed"], middle.counts["failed"], middle.counts["queued"]) == (1, 1, 3)
    assert middle.completed_at is None

    third = list(store.batch_results(batch.id, "a") or [])[2]
    store.request_cancel(third.id, "a")
    while (job := store.claim_next("w1", 30)) is not None:
        t_end = env.clock.advance(1)
        store.finish(job.id, "w1", "succeeded", result={"objective": job.batch_index})
    env.clock.advance(1)
    done = store.batch_status(batch.id, "a")
    assert done is not None and done.status == "completed"
    assert (done.counts["completed"], done.counts["failed"], done.counts["cancelled"]) == (3, 1, 1)
    assert done.in_progress_at == t1 and done.completed_at == t_end
    assert set(done.timestamps) == {"created", "in_progress", "completed"}

    results = list(store.batch_results(batch.id, "a", page_size=2) or [])
    assert [job.custom_id for job in results] == [f"line-{i}" for i in range(5)]
    assert [job.status for job in results] == ["succeeded", "failed", "cancelled", "succeeded", "succeeded"]


def test_a_job_joins_only_a_batch_of_its_owner(store: JobStore) -> None:
    batch = store.create_batch("a", [BatchLine("first", "solve", {})])
    with pytest.raises(ValueError, match="no batch"):
        store.create_job("b", "solve", {}, batch_id=batch.id, custom_id="second")
    store.create_job("a", "solve", {}, batch_id=batch.id, custom_id="second")
    status = store.batch_status(batch.id, "a")
    assert status is not None and status.total == 2 and status.counts["queued"] == 2


def test_a_batch_needs_unique_custom_ids_and_at_least_one_line(store: JobStore) -> None:
    with pytest.raises(ValueError, match="used twice"):
        store.create_batch("a", [BatchLine("x", "solve", {}), BatchLine("x", "solve", {})])
    with pytest.raises(ValueError, match="at least one"):
        store.create_batch("a", [])
    with pytest.raises(ValueError, match="kind"):
        store.create_batch("a", [BatchLine("x", "optimize", {})])  # type: ignore[arg-type]
    assert store.counts_by_status()["queued"] == 0


def test_a_large_batch_is_created_in_one_transaction(store: JobStore) -> None:
    batch = store.create_batch("a", [BatchLine(str(i), "solve", solve_request(i)) for i in range(1000)])
    assert batch.counts["queued"] == 1000
    assert [job.custom_id for job in store.batch_results(batch.id, "a") or []] == [
        str(i) for i in range(1000)
    ]


# --- API keys -----------------------------------------------------------------------------


def test_api_keys_are_stored_hashed_and_verified(env: Env, store: JobStore) -> None:
    key_id, plaintext = store.create_api_key("ci")
    other_id, other = store.create_api_key("ops")
    assert store.verify_api_key(plaintext) == key_id and store.verify_api_key(other) == other_id
    assert plaintext.startswith(f"osk_{key_id}_")
    for wrong in ("", "osk", "osk__", f"osk_{key_id}_", plaintext[:-1] + "x", plaintext + "x", other[:-1]):
        assert store.verify_api_key(wrong) is None
    assert store.verify_api_key(plaintext.replace(key_id, other_id)) is None

    engine = create_engine(env.url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM api_keys")).all()
    finally:
        engine.dispose()
    stored = " ".join(str(value) for row in rows for value in row)
    secret = plaintext.rsplit("_", 1)[-1]
    assert secret not in stored and plaintext not in stored
    if env.backend == "sqlite":
        raw = b"".join(p.read_bytes() for p in Path(env.url.removeprefix("sqlite:///")).parent.iterdir())
        assert secret.encode() not in raw

    assert store.revoke_api_key(key_id) and not store.revoke_api_key(key_id)
    assert store.verify_api_key(plaintext) is None and store.verify_api_key(other) == other_id


def test_input_lengths_are_checked(store: JobStore) -> None:
    with pytest.raises(ValueError, match="idempotency_key"):
        store.create_job("a", "solve", {}, idempotency_key="k" * 256)
    with pytest.raises(ValueError, match="kind"):
        store.create_job("a", "plan", {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_attempts"):
        store.create_job("a", "solve", {}, max_attempts=0)
