"""The scale-out path for real: a Redis server, Celery worker processes, a SQLite job store.

No Docker: the test starts its own ``redis-server`` on a free port in a temporary directory
(never a system service), and workers as ``python -m app worker`` subprocesses, the command
that docker-compose.yml runs. A batch of 50 jobs survives a ``kill -9`` of its worker in the
middle of a solve; a running job is cancelled by revoke with terminate.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.jobs.store import Job, JobStore, sqlite_url

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None,
    reason="redis-server is not installed (.ci/run installs it with apt-get install redis-server)",
)

ROOT = Path(__file__).resolve().parents[1]
_GOLDEN: dict[str, Any] = json.loads((ROOT / "tests" / "golden" / "core" / "knapsack.json").read_text())
KNAPSACK: dict[str, Any] = _GOLDEN["model"]
KNAPSACK_OPTIMUM = float(_GOLDEN["expect"]["objective"])
OWNER = "celery-test"

# Short clocks so that a dead worker's job comes back within seconds: the lease runs out
# after 2 s, Redis hands an unacknowledged message out again after 10 s, and a task is
# killed after 8 s (below the visibility timeout, as in production).
LEASE_S = 2.0
TIME_LIMIT_S = 8.0
VISIBILITY_S = 10.0

_databases = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(what: str, check: Callable[[], bool], timeout: float, every: float = 0.1) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


@dataclass
class Cluster:
    tmp: Path
    broker_url: str
    store: JobStore
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]]

    def start_worker(self, name: str, concurrency: int = 2) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("wb")
        cmd = [sys.executable, "-m", "app", "worker", "-c", str(concurrency), "-n", f"{name}@%h"]
        proc = subprocess.Popen(
            [*cmd, "--log-level", os.environ.get("OPTSCRIBE_TEST_WORKER_LOG", "warning")],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 reaches every process of it
        )
        log.close()
        self.workers.append(proc)
        return proc

    def kill9(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # warm shutdown
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.tmp.glob("*.log")))

    def jobs(self, ids: list[str]) -> list[Job]:
        found = [self.store.load_job(i) for i in ids]
        assert all(j is not None for j in found)
        return [j for j in found if j is not None]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert REDIS_SERVER is not None
    data = tmp_path_factory.mktemp("redis")
    port = _free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)]
    args += ["--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [REDIS_SERVER, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        _wait("redis-server", up, 15)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    from app.jobs import celery_app as capp

    db = redis_url.rsplit("/", 1)[0] + f"/{next(_databases)}"  # a Redis database per test
    url = sqlite_url(tmp_path / "jobs.sqlite3")
    env = {
        **os.environ,
        "OPTSCRIBE_BROKER_URL": db,
        "OPTSCRIBE_JOB_STORE_URL": url,
        "OPTSCRIBE_JOB_LEASE_SECONDS": str(LEASE_S),
        "OPTSCRIBE_CELERY_TASK_TIME_LIMIT": str(TIME_LIMIT_S),
        "OPTSCRIBE_CELERY_TASK_SOFT_TIME_LIMIT": str(TIME_LIMIT_S - 1),
        "OPTSCRIBE_CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_S),
        "OPTSCRIBE_TESTING": "1",
        "PYTHONWARNINGS": "ignore",
    }
    config = capp.CeleryConfig(
        broker_url=db,
        result_backend=db,
        store_url=url,
        concurrency=2,
        task_time_limit=TIME_LIMIT_S,
        task_soft_time_limit=TIME_LIMIT_S - 1,
        visibility_timeout=VISIBILITY_S,
        lease_seconds=LEASE_S,
    )
    capp.configure(config)
    store = JobStore(url)
    c = Cluster(tmp_path, db, store, env, [])
    try:
        yield c
    finally:
        for proc in c.workers:
            c.stop(proc)
        capp.close_connections()
        store.close()


def _finishes(store: JobStore, job_id: str) -> list[str]:
    """The terminal status events of a job: exactly one for a job that ended once."""
    events = store.events_after(job_id, 0, limit=10_000)
    return [
        str(e.data["status"])
        for e in events
        if e.type == "status" and e.data.get("status") in ("succeeded", "failed", "cancelled")
    ]


def test_a_batch_of_50_survives_kill_9_of_its_worker(cluster: Cluster) -> None:
    from app.jobs.celery_app import enqueue

    ids: list[str] = []
    for n in range(50):
        options: dict[str, Any] = {"time_limit": 5}
        if n % 5 == 2:
            options["_testing"] = {"hang": 1.5}  # slow enough to be caught mid-solve
        job, _ = cluster.store.create_job(OWNER, "solve", {"model": KNAPSACK, "options": options})
        ids.append(job.id)
    for job_id in ids:
        enqueue(job_id)

    first = cluster.start_worker("first")

    def caught_mid_solve() -> bool:
        jobs = cluster.jobs(ids)
        done = sum(j.status == "succeeded" for j in jobs)
        slow_solving = any(
            j.status == "running" and j.stage == "solving" and "_testing" in j.request["options"]
            for j in jobs
        )
        return done >= 5 and slow_solving

    try:
        _wait("the first worker to be mid-batch", caught_mid_solve, 60, every=0.05)
    except AssertionError:
        raise AssertionError(cluster.logs()) from None
    cluster.kill9(first)
    at_kill = cluster.jobs(ids)
    interrupted = [j.id for j in at_kill if j.status == "running"]
    done_at_kill = sum(j.status == "succeeded" for j in at_kill)
    assert interrupted, "the kill must catch a job mid-solve"

    cluster.start_worker("second")
    try:
        _wait("every job to end", lambda: all(j.is_terminal for j in cluster.jobs(ids)), 60, every=0.25)
    except AssertionError:
        counts: dict[str, int] = {}
        for j in cluster.jobs(ids):
            counts[j.status] = counts.get(j.status, 0) + 1
        raise AssertionError(f"{counts}\n{cluster.logs()}") from None

    final = cluster.jobs(ids)
    assert [j.status for j in final] == ["succeeded"] * 50, [(j.id, j.status, j.error) for j in final]
    for j in final:
        assert _finishes(cluster.store, j.id) == ["succeeded"], j.id  # none ended twice
        assert j.result is not None and j.result["status"] == "optimal"
        assert j.result["objective"] == pytest.approx(KNAPSACK_OPTIMUM)
    attempts = {j.id: j.attempts for j in final}
    for job_id in interrupted:
        assert attempts[job_id] == 2, (job_id, attempts[job_id])  # once cut short, once to the end
    assert all(a == 1 for i, a in attempts.items() if i not in interrupted)
    print(
        f"\ncelery crash test: 50 jobs, {done_at_kill} done when the worker was killed -9, "
        f"{len(interrupted)} interrupted mid-solve and rerun; 50 succeeded, each finished once, "
        f"{sum(attempts.values())} attempts in all"
    )


def test_cancel_a_running_job_with_revoke_terminate(cluster: Cluster) -> None:
    from app.jobs.celery_app import cancel, enqueue

    slow, _ = cluster.store.create_job(
        OWNER, "solve", {"model": KNAPSACK, "options": {"time_limit": 5, "_testing": {"hang": 30}}}
    )
    queued, _ = cluster.store.create_job(OWNER, "solve", {"model": KNAPSACK})
    cluster.start_worker("canceller", concurrency=1)
    enqueue(slow.id)

    def stage_solving() -> bool:
        job = cluster.store.load_job(slow.id)
        return job is not None and job.status == "running" and job.stage in ("starting", "solving")

    try:
        _wait("the slow job to run", stage_solving, 30)
    except AssertionError:
        raise AssertionError(cluster.logs()) from None
    # cancel while queued: ended at once, and the message is dropped when it arrives
    assert cancel(cluster.store, queued.id, OWNER) is not None
    enqueue(queued.id)
    t0 = time.monotonic()
    asked = cancel(cluster.store, slow.id, OWNER)
    assert asked is not None and asked.cancel_requested
    try:
        _wait("the running job to be cancelled", lambda: _status(cluster, slow.id) == "cancelled", 15)
    except AssertionError:
        events = [(e.type, e.data) for e in cluster.store.events_after(slow.id, 0, limit=100)]
        raise AssertionError(f"{cluster.store.load_job(slow.id)}\n{events}\n{cluster.logs()}") from None
    assert time.monotonic() - t0 < 10  # long before its 30 s hang
    assert _finishes(cluster.store, slow.id) == ["cancelled"]
    assert _status(cluster, queued.id) == "cancelled"
    assert _finishes(cluster.store, queued.id) == ["cancelled"]

    # the worker lives on and runs the next job
    after, _ = cluster.store.create_job(OWNER, "solve", {"model": KNAPSACK})
    enqueue(after.id)
    _wait("the next job", lambda: _status(cluster, after.id) == "succeeded", 30)
    assert cluster.store.load_job(slow.id) is not None
    assert cancel(cluster.store, slow.id, "someone-else") is None  # not theirs: as if absent


def _status(cluster: Cluster, job_id: str) -> str | None:
    job = cluster.store.load_job(job_id)
    return None if job is None else job.status


def test_the_api_hands_jobs_to_celery_when_the_runner_is_celery(cluster: Cluster) -> None:
    """`job_runner=celery`: POST /v1/jobs persists, enqueues; a Celery worker finishes the job."""
    from fastapi.testclient import TestClient

    from app.api.main import create_service_app
    from app.settings import Settings

    settings = Settings(job_runner="celery", job_store_url=cluster.env["OPTSCRIBE_JOB_STORE_URL"], workers=2)
    model = {
        "variables": [{"name": "x", "domain": "integer", "upper": 7}],
        "objective": {"sense": "maximize", "expression": "3 * x"},
        "constraints": [{"id": "cap", "template": "upper_bound", "expression": "2 * x <= 9"}],
    }
    app = create_service_app(settings)
    assert app.state.services.supervisor is None  # no embedded workers beside Celery
    with TestClient(app) as client:
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready"  # no worker yet: jobs wait in the queue, which is up
        assert ready["checks"]["queue"]["ok"] and ready["checks"]["store"]["ok"]
        assert not ready["checks"]["workers"]["ok"] and not ready["checks"]["workers"]["required"]
        assert "optscribe worker" in ready["checks"]["workers"]["detail"]
    cluster.start_worker("api-worker", concurrency=1)
    with TestClient(app) as client:
        _wait("a worker to answer", lambda: client.get("/readyz").json()["checks"]["workers"]["ok"], 60)
        r = client.post("/v1/jobs", json={"model": model})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        _wait(
            "the job to succeed", lambda: client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded", 60
        )
        body = client.get(f"/v1/jobs/{job_id}").json()
    assert body["result"]["objective"] == 12
    assert _finishes(cluster.store, job_id) == ["succeeded"]


def test_readyz_says_the_queue_is_down_when_the_broker_is(cluster: Cluster) -> None:
    from fastapi.testclient import TestClient

    from app.api.main import create_service_app
    from app.jobs import celery_app as capp
    from app.settings import Settings

    down = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there
    capp.configure(capp.CeleryConfig(**{**vars(capp._current_config()), "broker_url": down}))
    settings = Settings(job_runner="celery", job_store_url=cluster.env["OPTSCRIBE_JOB_STORE_URL"])
    with TestClient(create_service_app(settings)) as client:
        r = client.get("/readyz")
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["code"] == "not_ready" and "queue" in error["message"]
    queue = error["details"]["checks"]["queue"]
    assert not queue["ok"] and queue["required"] and queue["detail"]
