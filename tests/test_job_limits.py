"""Job and batch size limits: refused with 422 before anything is stored.

A job's model may have at most ``job_model_max_variables`` variables (counted from its set
sizes, before lowering), a problem text at most ``job_text_max_chars`` characters, a time
limit at most ``job_time_limit_max``; a batch at most ``batch_max_lines`` lines, and each
line is held to the job limits, reported by its line number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_jobs_api import job_settings

from app.api import create_app
from app.jobs.store import JobStore

ROOT = Path(__file__).resolve().parents[1]


def furniture() -> dict[str, Any]:
    model: dict[str, Any] = json.loads((ROOT / "examples" / "furniture.json").read_text())
    return model


def wide(n: int) -> dict[str, Any]:
    """A model whose one variable has ``n`` x ``n`` elements."""
    return {
        "schema": "optscribe.model/v1",
        "name": "wide",
        "sets": {"I": {"range": [1, n]}},
        "variables": [{"name": "x", "index": ["I", "I"], "upper": 1}],
        "objective": {"sense": "maximize", "expression": "sum(x[i, j] for i in I for j in I)"},
        "constraints": [],
    }


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[TestClient, JobStore]]:
    settings = job_settings(
        tmp_path,
        job_model_max_variables=10_000,
        job_text_max_chars=200,
        job_time_limit_max=60.0,
        batch_max_lines=3,
    )
    store = JobStore.in_data_dir(tmp_path)
    with TestClient(create_app(settings, job_store=store)) as client:
        yield client, store
    store.close()


def stored(store: JobStore) -> int:
    return sum(store.counts_by_status().values())


def test_a_model_within_the_limits_is_accepted(setup: tuple[TestClient, JobStore]) -> None:
    client, store = setup
    r = client.post("/v1/jobs", json={"model": wide(100), "options": {"time_limit": 60}})
    assert r.status_code == 202, r.text
    assert stored(store) == 1


def test_too_many_variables_is_422_and_nothing_is_stored(setup: tuple[TestClient, JobStore]) -> None:
    client, store = setup
    r = client.post("/v1/jobs", json={"model": wide(101)})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "too_large"
    assert "10201 variables" in error["message"] and "10000" in error["message"]
    assert error["details"] == {"variables": 10201, "limit": 10_000}
    assert stored(store) == 0


def test_too_long_a_text_is_422(setup: tuple[TestClient, JobStore]) -> None:
    client, store = setup
    r = client.post("/v1/jobs", json={"text": "a" * 201})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "too_large"
    assert "201 characters" in r.json()["error"]["message"]
    assert stored(store) == 0


def test_too_long_a_time_limit_is_422(setup: tuple[TestClient, JobStore]) -> None:
    client, store = setup
    r = client.post("/v1/jobs", json={"model": furniture(), "options": {"time_limit": 61}})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "too_large"
    assert "61 s" in r.json()["error"]["message"]
    assert stored(store) == 0


def test_a_batch_line_beyond_the_limits_is_named_by_its_number(setup: tuple[TestClient, JobStore]) -> None:
    client, store = setup
    lines = [
        {"custom_id": "ok", "model": furniture()},
        {"custom_id": "big", "model": wide(200)},
    ]
    r = client.post("/v1/batches", json={"lines": lines})
    assert r.status_code == 422
    issues = r.json()["error"]["issues"]
    assert [i["where"] for i in issues] == ["line 2"]
    assert "40000 variables" in issues[0]["message"]
    assert stored(store) == 0


def test_a_batch_with_too_many_lines_is_422(setup: tuple[TestClient, JobStore]) -> None:
    client, store = setup
    lines = [{"custom_id": f"c{i}", "model": furniture()} for i in range(4)]
    r = client.post("/v1/batches", json={"lines": lines})
    assert r.status_code == 422
    assert "at most 3 lines" in r.json()["error"]["message"]
    assert stored(store) == 0


def test_a_model_may_bring_its_words_within_the_text_limit(setup: tuple[TestClient, JobStore]) -> None:
    client, store = setup
    ok = client.post("/v1/jobs", json={"model": furniture(), "source_text": "A shop makes chairs."})
    assert ok.status_code == 202, ok.text
    job = store.load_job(ok.json()["id"])
    assert job is not None and job.kind == "solve" and job.request["source_text"] == "A shop makes chairs."
    long = client.post("/v1/jobs", json={"model": furniture(), "source_text": "a" * 201})
    assert long.status_code == 422 and long.json()["error"]["code"] == "too_large"
    assert stored(store) == 1
