"""Jobs and batches over HTTP, for real: a SQLite file, the real solve pool, real workers.

Covered: submit -> 202 + Location -> poll to succeeded; the three Idempotency-Key cases;
the events stream (stages, log lines, the end, Last-Event-ID resume); cancel while queued
and while running; a solve that overruns is killed at its limit and the job says so; a
formalize job over the scripted LLM through needs_input -> answers -> succeeded; a batch of
10 with results in input order, and a bad batch refused by line number; another API key's
job is a 404; /readyz and /metrics see the store; and a real ``optscribe serve`` killed with
SIGKILL mid-queue and restarted on the same data directory: every accepted job succeeds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from llm_stub import ScriptedLLM, answer, stub_settings
from test_pipeline import TEXT, good_model, llm_json

from app.api import create_app
from app.api.security import hash_key
from app.formalize.pipeline import Pipeline
from app.jobs.runner import TESTING_ENV, Limits, SolvePool
from app.jobs.store import IdempotencyInProgress, JobStore
from app.jobs.supervisor import Supervisor
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
KEY_A = "key-a-" + "x" * 20
KEY_B = "key-b-" + "y" * 20
TERMINAL = {"succeeded", "failed", "cancelled"}


def job_settings(tmp: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_base_url": None,
        "llm_api_key": None,
        "llm_model": None,
        "llm_cache_dir": None,
        "api_keys_required": False,
        "api_key_hashes": [],
        "rate_limit_per_minute": None,
        "cors_origins": [],
        "ready_requires_llm": False,
        "data_dir": tmp,
        "job_store_url": None,
        "workers": 2,
        "job_lease_seconds": 2.0,
        "job_poll_seconds": 0.05,
        "job_max_attempts": 3,
        "solve_time_limit": 10.0,
    }
    values.update(changes)
    return Settings(**values)


LIMITS = Limits(time_limit=10.0, grace=0.5, term_grace=0.3, cancel_grace=0.3)


@pytest.fixture(autouse=True)
def _testing_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TESTING_ENV, "1")


@pytest.fixture(scope="module")
def pool() -> Iterator[SolvePool]:
    with SolvePool(2, limits=LIMITS) as p:
        p.wait_ready()
        yield p


Factory = Callable[..., TestClient]


@pytest.fixture
def make(tmp_path: Path, pool: SolvePool) -> Iterator[Factory]:
    """``make(workers=True, pipeline=None, **settings)``: a started TestClient over a fresh store."""
    opened: list[tuple[TestClient, JobStore]] = []

    def factory(
        workers: bool = True, pipeline: Callable[[], Pipeline] | None = None, **changes: Any
    ) -> TestClient:
        settings = job_settings(tmp_path / f"data{len(opened)}", **changes)
        store = JobStore.in_data_dir(settings.data_dir)
        sup = (
            Supervisor(store, settings, pool=pool, pipeline_factory=pipeline, limits=LIMITS)
            if workers
            else None
        )
        client = TestClient(create_app(settings, job_store=store, supervisor=sup))
        client.__enter__()
        opened.append((client, store))
        return client

    yield factory
    for client, store in opened:
        client.__exit__(None, None, None)
        store.close()


def solve_body(**options: Any) -> dict[str, Any]:
    return {"model": good_model(), "options": {"time_limit": 5, **options}}


def wait_for(client: TestClient, job_id: str, statuses: set[str], timeout: float = 20.0, **kw: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/v1/jobs/{job_id}", **kw)
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job stuck in {job['status']}: {job}"
        time.sleep(0.05)


def sse_events(text: str) -> list[dict[str, Any]]:
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":") or ": " not in line:
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
            fields["id"] = int(fields["id"])
            out.append(fields)
    return out


# ----------------------------------------------------------------------------- jobs


def test_submit_answers_202_with_location_then_succeeds(make: Factory) -> None:
    client = make()
    r = client.post("/v1/jobs", json=solve_body())
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert r.headers["location"] == f"/v1/jobs/{job_id}"
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["status"] in ("queued", "running", "succeeded")
    job = wait_for(client, job_id, TERMINAL)
    assert job["status"] == "succeeded", job
    assert job["result"]["status"] == "optimal"
    assert job["result"]["objective"] == pytest.approx(1350)
    assert {"queued", "running", "succeeded"} <= set(job["timestamps"])
    assert job["attempts"] == 1 and job["finished_at"]
    assert job["stage"] == "done"
    # listed, paginated
    client.post("/v1/jobs", json=solve_body(time_limit=4))
    first = client.get("/v1/jobs", params={"limit": 1}).json()
    assert len(first["data"]) == 1 and first["has_more"]
    second = client.get("/v1/jobs", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert second["data"][0]["id"] == job_id and not second["has_more"]
    empty_cursor = client.get("/v1/jobs", params={"limit": 1, "cursor": ""}).json()["data"]
    assert [j["id"] for j in empty_cursor] == [j["id"] for j in first["data"]]
    bad = client.get("/v1/jobs", params={"cursor": "nope"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_cursor"
    assert client.get("/v1/jobs/doesnotexist").status_code == 404


def test_a_bad_submission_is_refused_before_anything_is_stored(make: Factory) -> None:
    client = make(workers=False)
    r = client.post("/v1/jobs", json={"model": {"schema": "optscribe.model/v1", "nonsense": 1}})
    assert r.status_code == 422 and "error" in r.json()
    r = client.post("/v1/jobs", json={"model": good_model(), "text": "both"})
    assert r.status_code == 422
    r = client.post("/v1/jobs", json={"model": good_model(), "options": {"frobnicate": 1}})
    assert r.status_code == 422
    assert client.get("/v1/jobs").json()["data"] == []


def test_idempotency_key_three_cases(make: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    client = make(workers=False)
    body = solve_body()
    first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 202
    again = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    other = client.post("/v1/jobs", json=solve_body(time_limit=3), headers={"Idempotency-Key": "k1"})
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert len(client.get("/v1/jobs").json()["data"]) == 1
    # In progress: SQLite serializes writers, so only Postgres can be caught mid-accept;
    # here the store says so, and the API must answer 409 with Retry-After.
    store = client.app.state.services.store  # type: ignore[attr-defined]

    def busy(*args: Any, **kwargs: Any) -> Any:
        raise IdempotencyInProgress("k2")

    monkeypatch.setattr(store, "create_job", busy)
    r = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k2"})
    assert r.status_code == 409 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "idempotency_in_progress"


def test_events_stream_stages_and_log_lines_then_ends(make: Factory) -> None:
    client = make()
    job_id = client.post("/v1/jobs", json=solve_body(log_lines=20)).json()["id"]
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())  # returns: the stream ends with the job
    events = sse_events(text)
    seqs = [e["id"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    stages = [e["data"]["stage"] for e in events if e["event"] == "stage"]
    assert "starting" in stages and "solving" in stages
    assert any(e["event"] == "log" and "line" in e["data"] for e in events)
    assert events[-1]["event"] == "status" and events[-1]["data"]["status"] == "succeeded"
    # resume after an event: only the later ones come
    r = client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": str(seqs[2])})
    assert [e["id"] for e in sse_events(r.text)] == seqs[3:]


def test_cancel_while_queued_is_immediate(make: Factory) -> None:
    client = make(workers=False)
    job_id = client.post("/v1/jobs", json=solve_body()).json()["id"]
    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert "cancelled" in r.json()["timestamps"]
    events = sse_events(client.get(f"/v1/jobs/{job_id}/events").text)  # ends: terminal
    assert events[-1]["data"]["status"] == "cancelled"


def test_cancel_while_running_stops_the_solve(make: Factory) -> None:
    client = make()
    job_id = client.post("/v1/jobs", json=solve_body(_testing={"hang": 30})).json()["id"]
    job = wait_for(client, job_id, {"running"})
    deadline = time.monotonic() + 10
    while job["stage"] != "solving":
        assert time.monotonic() < deadline
        time.sleep(0.05)
        job = client.get(f"/v1/jobs/{job_id}").json()
    t0 = time.monotonic()
    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"]
    job = wait_for(client, job_id, TERMINAL, timeout=10)
    assert job["status"] == "cancelled", job
    assert time.monotonic() - t0 < 5  # the heartbeat saw it and the solver child was stopped


def test_cancel_while_the_llm_answers_ends_cancelled_not_solved(make: Factory) -> None:
    """The cancel comes while the LLM is still writing the model, and the model arrives well
    before the next heartbeat would be due (a 30 s lease): the job must not go on to solve."""
    llm = ScriptedLLM(answer(llm_json(good_model()), delay=1.5))
    s = stub_settings()
    client = make(pipeline=lambda: Pipeline(client=llm.client(s), settings=s), job_lease_seconds=30.0)
    job_id = client.post("/v1/jobs", json={"text": TEXT}).json()["id"]
    deadline = time.monotonic() + 10
    while client.get(f"/v1/jobs/{job_id}").json()["stage"] != "formalizing":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"], r.json()
    job = wait_for(client, job_id, TERMINAL, timeout=15)
    assert job["status"] == "cancelled", job
    assert job["result"] is None  # nothing was solved


def test_a_short_job_costs_two_writes_and_keeps_its_events(
    tmp_path: Path, pool: SolvePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claim and finish: the stages and log lines of a solve shorter than the flush interval
    are written with its finish, in one transaction, not in a commit (an fsync) per stage."""
    from sqlalchemy import event
    from test_store import write_caller

    from app.jobs import execute

    monkeypatch.setattr(execute, "_FLUSH_SECONDS", 60.0)  # every solve here is "short",
    monkeypatch.setattr(execute, "_FLUSH_LINES", 10_000)  # and its log one batch
    settings = job_settings(tmp_path)
    store = JobStore.in_data_dir(tmp_path)
    job, _ = store.create_job("me", "solve", solve_body(log_lines=20))
    writes: list[str] = []

    def on_commit(conn: Any) -> None:
        caller = write_caller()
        if caller is not None:
            writes.append(caller)

    event.listen(store._engine, "commit", on_commit)
    claimed = store.claim_next("w1", 30.0)
    assert claimed is not None
    assert execute.execute_job(store, claimed, "w1", pool, None, settings, limits=LIMITS) == "succeeded"
    assert writes == ["claim_next", "finish"]
    events = store.events_after(job.id, 0, limit=1000)
    kinds = [(e.type, e.data.get("stage") or e.data.get("status")) for e in events]
    assert ("stage", "starting") in kinds and ("stage", "solving") in kinds
    assert any(e.type == "log" and "line" in e.data for e in events)
    assert kinds[-1] == ("status", "succeeded")  # the end comes last, after every line
    assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + len(events)))
    done = store.load_job(job.id)
    assert done is not None and done.stage == "done"
    store.close()


def test_a_solve_that_overruns_is_killed_at_its_limit(make: Factory) -> None:
    client = make()
    body = solve_body(time_limit=0.5, _testing={"hang": 60})
    t0 = time.monotonic()
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    job = wait_for(client, job_id, TERMINAL, timeout=15)
    assert time.monotonic() - t0 < 8
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "solve_timeout"
    assert "killed" in job["error"]["message"]


def test_formalize_job_asks_then_resumes_with_answers(make: Factory) -> None:
    text = TEXT.replace(" At least 5 tables must be made.", "")
    question = "What is the minimum number of tables?"
    ask = json.loads(llm_json(good_model())) | {"variables": [], "constraints": [], "questions": [question]}
    resumed = good_model()
    resumed["constraints"][1]["source"] = "At least 5 tables must be made."
    llm = ScriptedLLM(json.dumps(ask), llm_json(resumed))
    s = stub_settings()
    clients = []

    def pipeline() -> Pipeline:
        c = llm.client(s)
        clients.append(c)
        return Pipeline(client=c, settings=s)

    client = make(pipeline=pipeline)
    r = client.post("/v1/jobs", json={"text": text})
    assert r.status_code == 202
    job_id = r.json()["id"]
    job = wait_for(client, job_id, {"needs_input", *TERMINAL})
    assert job["status"] == "needs_input", job
    assert job["questions"] == [question]
    events = sse_events(client.get(f"/v1/jobs/{job_id}/events").text)  # ends at needs_input
    assert "formalizing" in [e["data"].get("stage") for e in events if e["event"] == "stage"]
    wrong = client.post(f"/v1/jobs/{job_id}/answers", json={"answers": {}})
    assert wrong.status_code == 422
    answers = {"answers": {question: "At least 5 tables must be made."}}
    r = client.post(f"/v1/jobs/{job_id}/answers", json=answers)
    assert r.status_code == 202 and r.json()["status"] in ("queued", "running", "succeeded")
    job = wait_for(client, job_id, TERMINAL)
    assert job["status"] == "succeeded", (job["error"], job["result"])
    assert job["result"]["objective"] == pytest.approx(1350)
    assert job["result"]["formalization"]["model"]["name"] == "workshop"
    again = client.post(f"/v1/jobs/{job_id}/answers", json={"answers": {question: "5"}})
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_awaiting_input"
    assert llm.count == 2
    for c in clients:
        c.close()


def test_a_formalize_job_without_an_llm_fails_with_a_reason(make: Factory) -> None:
    client = make()
    job_id = client.post("/v1/jobs", json={"text": "maximize something"}).json()["id"]
    job = wait_for(client, job_id, TERMINAL)
    assert job["status"] == "failed" and job["error"]["code"] == "llm_not_configured"


# ----------------------------------------------------------------------------- batches


def test_batch_of_ten_results_in_input_order(make: Factory) -> None:
    client = make()
    lines = [
        json.dumps({"custom_id": f"req-{i}", "model": good_model(), "options": {"time_limit": 5}})
        for i in range(10)
    ]
    files = {"file": ("problems.jsonl", ("\n".join(lines) + "\n").encode(), "application/jsonl")}
    r = client.post("/v1/batches", files=files)
    assert r.status_code == 202, r.text
    batch = r.json()
    assert batch["request_counts"]["total"] == 10 and batch["input_file_name"] == "problems.jsonl"
    assert r.headers["location"] == f"/v1/batches/{batch['id']}"
    deadline = time.monotonic() + 30
    while batch["status"] != "completed":
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)
        batch = client.get(f"/v1/batches/{batch['id']}").json()
    assert batch["request_counts"] == {"total": 10, "completed": 10, "failed": 0, "cancelled": 0}
    assert {"created", "in_progress", "completed"} <= set(batch["timestamps"])
    r = client.get(f"/v1/batches/{batch['id']}/results")
    assert r.status_code == 200
    results = [json.loads(line) for line in r.text.splitlines()]
    assert [x["custom_id"] for x in results] == [f"req-{i}" for i in range(10)]
    assert all(x["status"] == "succeeded" for x in results)
    assert all(x["result"]["objective"] == pytest.approx(1350) for x in results)


def test_a_batch_with_bad_lines_creates_nothing(make: Factory) -> None:
    client = make(workers=False)
    good = {"custom_id": "a", "model": good_model()}
    lines = [good, {"custom_id": "b"}, {"custom_id": "a", "model": good_model()}, "{not json"]
    r = client.post("/v1/batches", json={"lines": lines})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_batch"
    wheres = {i["where"] for i in err["issues"]}
    assert wheres == {"line 2", "line 3", "line 4"}
    assert client.get("/v1/jobs").json()["data"] == []
    ok = client.post("/v1/batches", json={"lines": [good]})
    assert ok.status_code == 202 and ok.json()["request_counts"]["total"] == 1


# ----------------------------------------------------------------------------- keys, probes


def test_another_keys_job_and_batch_are_404(make: Factory) -> None:
    client = make(workers=False, api_keys_required=True, api_key_hashes=[hash_key(KEY_A), hash_key(KEY_B)])
    a = {"Authorization": f"Bearer {KEY_A}"}
    b = {"X-API-Key": KEY_B}
    assert client.post("/v1/jobs", json=solve_body()).status_code == 401
    job_id = client.post("/v1/jobs", json=solve_body(), headers=a).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}", headers=a).status_code == 200
    for method, path in [
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/events"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
    ]:
        r = client.request(method, path, headers=b)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (method, path)
    r = client.post(f"/v1/jobs/{job_id}/answers", json={"answers": {"q": "a"}}, headers=b)
    assert r.status_code == 404
    assert client.get("/v1/jobs", headers=b).json()["data"] == []
    made = client.post("/v1/batches", json={"lines": [{"custom_id": "x", "model": good_model()}]}, headers=a)
    bid = made.json()["id"]
    assert client.get(f"/v1/batches/{bid}", headers=b).status_code == 404
    assert client.get(f"/v1/batches/{bid}/results", headers=b).status_code == 404
    assert client.get(f"/v1/batches/{bid}/results", headers=a).status_code == 200


def test_readyz_checks_the_store_and_metrics_count_jobs(make: Factory) -> None:
    client = make()
    job_id = client.post("/v1/jobs", json=solve_body()).json()["id"]
    wait_for(client, job_id, TERMINAL)
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert {"store", "workers"} <= set(ready.json()["checks"])
    metrics = client.get("/metrics").text
    assert 'optscribe_jobs{status="succeeded"} 1.0' in metrics


def test_without_a_store_jobs_answer_503() -> None:
    client = TestClient(create_app(job_settings(Path("/nonexistent"))))
    r = client.post("/v1/jobs", json=solve_body())
    assert r.status_code == 503 and r.json()["error"]["code"] == "jobs_unavailable"


# ----------------------------------------------------------------------------- restart


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_server(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPTSCRIBE_", "OPENAI_"))}
    env.update(
        OPTSCRIBE_DATA_DIR=str(data_dir),
        OPTSCRIBE_WORKERS="2",
        OPTSCRIBE_JOB_LEASE_SECONDS="1.5",
        OPTSCRIBE_JOB_POLL_SECONDS="0.05",
        OPTSCRIBE_TESTING="1",
    )
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGKILL takes its solver children too
        )
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx2.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def test_restart_mid_queue_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = _free_port()
    log = tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    proc = _start_server(data, port, log)
    try:
        ids = []
        for i in range(20):
            body = solve_body(_testing={"hang": 0.3})
            r = httpx2.post(f"{base}/v1/jobs", json=body, headers={"Idempotency-Key": f"job-{i}"}, timeout=10)
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        deadline = time.monotonic() + 20
        while True:  # kill once some jobs are done and some are not
            statuses = [httpx2.get(f"{base}/v1/jobs/{i}", timeout=5).json()["status"] for i in ids]
            if statuses.count("succeeded") >= 2:
                break
            assert time.monotonic() < deadline, statuses
            time.sleep(0.05)
    finally:
        _kill_group(proc)
    with JobStore.in_data_dir(data) as store:  # the state the kill left behind
        at_kill = {i: store.load_job(i) for i in ids}
    interrupted = [i for i, j in at_kill.items() if j is not None and j.status == "running"]
    assert sum(j is not None and j.status == "succeeded" for j in at_kill.values()) < 20
    assert interrupted, "no job was mid-solve at the kill"
    proc = _start_server(data, port, log)
    try:
        deadline = time.monotonic() + 40
        while True:
            jobs = [httpx2.get(f"{base}/v1/jobs/{i}", timeout=5).json() for i in ids]
            if all(j["status"] in TERMINAL for j in jobs):
                break
            assert time.monotonic() < deadline, [j["status"] for j in jobs]
            time.sleep(0.2)
        assert [j["status"] for j in jobs] == ["succeeded"] * 20, jobs
        # the jobs the killed server held were taken over once their leases ran out
        assert all(j["attempts"] >= 2 for j in jobs if j["id"] in interrupted)
        listed = httpx2.get(f"{base}/v1/jobs", params={"limit": 100}, timeout=5).json()["data"]
        assert sorted(j["id"] for j in listed) == sorted(ids)  # none lost, none doubled
    finally:
        _kill_group(proc)


def test_worker_processes_replace_a_killed_one_and_every_job_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve`'s workers are processes: one killed with SIGKILL mid-solve is started again,
    its job is taken again once its lease runs out, and every job succeeds once."""
    from app.jobs.processes import WorkerProcesses

    monkeypatch.setenv(TESTING_ENV, "1")  # the children inherit it: the "hang" hook works there
    settings = job_settings(tmp_path, workers=2, job_lease_seconds=1.0)
    store = JobStore.in_data_dir(tmp_path)
    slow, _ = store.create_job("me", "solve", solve_body(_testing={"hang": 2}))
    quick = [store.create_job("me", "solve", solve_body())[0].id for _ in range(6)]
    workers = WorkerProcesses(settings)
    workers.start()
    try:
        deadline = time.monotonic() + 60
        while (job := store.load_job(slow.id)) is None or job.lease_owner is None:
            assert time.monotonic() < deadline, "no worker process took the slow job"
            time.sleep(0.05)
        victim = int(job.lease_owner.split("-")[-3])  # "<host>-<pid>-<tag>-w0"
        assert victim in [p.pid for p in workers._procs]
        os.kill(victim, signal.SIGKILL)
        for job_id in [slow.id, *quick]:
            while (done := store.load_job(job_id)) is None or not done.is_terminal:
                assert time.monotonic() < deadline, f"job {job_id} did not end"
                time.sleep(0.1)
            assert done.status == "succeeded", (done.status, done.error)
        again = store.load_job(slow.id)
        assert again is not None and again.attempts == 2
        assert workers.restarts >= 1
        while workers.probe() is not None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        workers.stop()
        store.close()
    assert workers.probe() == "the job workers are not running"
