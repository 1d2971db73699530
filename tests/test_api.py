"""The REST API: solve, formalize, export, schema, probes, metrics, and the rules around them.

Most tests drive the app in-process with FastAPI's TestClient; ``test_real_server`` starts
uvicorn on a free port in a thread and talks to it over loopback. Formalization runs the
real pipeline against the scripted LLM of ``llm_stub`` (no network, no LLM), injected by
overriding the ``get_llm_client`` dependency.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from llm_stub import ScriptedLLM, answer, stub_settings
from shared_models import WORKSHOP_TEXT, llm_json, workshop_model
from typer.testing import CliRunner

from app.api import create_app
from app.api.deps import ReadinessCheck, get_llm_client
from app.api.security import RateLimiter, hash_key, key_from_headers
from app.settings import Settings
from solvers.api import load_model

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

LP_TEXT = "Maximize\n obj: 3 x + 2 y\nSubject To\n c1: x + y <= 4\n c2: x + 3 y <= 6\nBounds\n x <= 3\nEnd\n"


def api_settings(**changes: Any) -> Settings:
    """Settings independent of the environment: no LLM, keys and limits off unless asked."""
    values: dict[str, Any] = {
        "llm_base_url": None,
        "llm_api_key": None,
        "llm_model": None,
        "llm_cache_dir": None,
        "max_body_bytes": 1_000_000,
        "sync_time_limit_default": 10.0,
        "sync_time_limit_max": 30.0,
        "sync_model_max_variables": 10_000,
        "sync_model_max_nonzeros": 200_000,
        "api_keys_required": False,
        "api_key_hashes": [],
        "rate_limit_per_minute": None,
        "cors_origins": [],
        "ready_requires_llm": False,
        "sync_max_concurrency": 4,
        "formalize_max_concurrency": 8,
    }
    values.update(changes)
    return Settings(**values)


def make_client(settings: Settings | None = None, **kwargs: Any) -> TestClient:
    return TestClient(create_app(settings or api_settings(), **kwargs))


@pytest.fixture
def client() -> Iterator[TestClient]:
    with make_client() as c:
        yield c


furniture = workshop_model


def staffing() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "staffing_infeasible.json").read_text())
    return data


def assert_error(r: Any, status: int, code: str) -> dict[str, Any]:
    """The one error shape, with the expected status and code."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    err: dict[str, Any] = body["error"]
    assert err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    assert set(err) <= {"code", "message", "issues", "details"}
    for issue in err.get("issues", []):
        assert {"code", "message"} <= set(issue)
    return err


# ----------------------------------------------------------------------------- solve


def test_solve_happy_path(client: TestClient) -> None:
    r = client.post("/v1/solve", json={"model": furniture(), "options": {"time_limit": 5}})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "optimal"
    assert result["objective"] == pytest.approx(1350)
    assert result["values"] == {"x[chair]": pytest.approx(20), "x[table]": pytest.approx(15)}
    assert result["backend"] in ("highs", "cpsat")


def test_solve_with_backend_and_options(client: TestClient) -> None:
    opts = {"backend": "cpsat", "threads": 1, "mip_gap": 0.0, "explain": False}
    r = client.post("/v1/solve", json={"model": furniture(), "options": opts})
    assert r.status_code == 200, r.text
    assert r.json()["backend"] == "cpsat" and r.json()["objective"] == pytest.approx(1350)


def test_solve_lp_and_mps_text(client: TestClient) -> None:
    r = client.post("/v1/solve", json={"lp": LP_TEXT})
    assert r.status_code == 200, r.text
    assert r.json()["objective"] == pytest.approx(11) and r.json()["values"]["x"] == pytest.approx(3)
    mps = client.post("/v1/export?format=mps", json={"model": furniture()}).text
    r = client.post("/v1/solve", json={"mps": mps})
    assert r.status_code == 200, r.text
    assert r.json()["objective"] == pytest.approx(1350)


def test_lp_text_with_another_backend_is_refused(client: TestClient) -> None:
    r = client.post("/v1/solve", json={"lp": LP_TEXT, "options": {"backend": "cpsat"}})
    err = assert_error(r, 422, "backend_refused")
    assert "highs" in err["message"]


def test_infeasible_is_a_result_with_its_explanation(client: TestClient) -> None:
    r = client.post("/v1/solve", json={"model": staffing()})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "infeasible"
    explanation = result["explanation"]
    assert explanation["summary"]
    ids = {c["id"] for c in explanation["conflict"]}
    assert "budget_cap" in ids
    assert any(c.get("source") == "The weekly wage budget is $4000." for c in explanation["conflict"])
    assert explanation["relaxations"]


def test_bad_json_is_422_in_the_one_shape(client: TestClient) -> None:
    r = client.post("/v1/solve", content=b'{"model": {', headers={"content-type": "application/json"})
    err = assert_error(r, 422, "invalid_json")
    assert err["issues"][0]["code"] == "json"


def test_unknown_fields_are_named(client: TestClient) -> None:
    r = client.post("/v1/solve", json={"model": furniture(colour="red")})
    err = assert_error(r, 422, "invalid_request")
    assert err["issues"][0]["message"] == "unknown field 'colour'"
    assert err["issues"][0]["where"] == "model.colour"
    r = client.post("/v1/solve", json={"model": furniture(), "options": {"time_limt": 3}})
    err = assert_error(r, 422, "invalid_request")
    assert err["issues"][0]["where"] == "options.time_limt"


def test_model_or_lp_exactly_one(client: TestClient) -> None:
    assert_error(client.post("/v1/solve", json={}), 422, "invalid_request")
    err = assert_error(
        client.post("/v1/solve", json={"model": furniture(), "lp": LP_TEXT}), 422, "invalid_request"
    )
    assert "exactly one" in err["issues"][0]["message"]


def test_a_model_that_fails_its_checks_says_where(client: TestClient) -> None:
    m = furniture()
    m["constraints"][1]["expression"] = "x['table'] >= min_tablez"
    r = client.post("/v1/solve", json={"model": m})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] in ("check_failed", "invalid_model")
    assert any("min_tablez" in i["message"] or "min_tablez" in i.get("culprit", "") for i in err["issues"])


def test_too_large_for_sync() -> None:
    big = furniture()
    big["sets"]["T"] = {"range": [1, 50]}
    big["variables"].append({"name": "y", "index": ["T", "T"], "domain": "continuous"})
    with make_client(api_settings(sync_model_max_variables=1000)) as c:
        err = assert_error(c.post("/v1/solve", json={"model": big}), 422, "too_large_for_sync")
        assert "POST /v1/jobs" in err["message"] and "2502 variables" in err["message"]
    # counted after lowering too: nonzeros
    with make_client(api_settings(sync_model_max_nonzeros=3)) as c:
        err = assert_error(c.post("/v1/solve", json={"model": furniture()}), 422, "too_large_for_sync")
        assert "nonzeros" in err["message"] and err["details"]["variables"] == 2
        err = assert_error(c.post("/v1/solve", json={"lp": LP_TEXT}), 422, "too_large_for_sync")
    # and a time limit beyond the synchronous maximum
    with make_client(api_settings(sync_time_limit_max=5)) as c:
        r = c.post("/v1/solve", json={"model": furniture(), "options": {"time_limit": 60}})
        err = assert_error(r, 422, "too_large_for_sync")
        assert "60 s" in err["message"] and "POST /v1/jobs" in err["message"]


def test_body_too_large_by_content_length_and_by_stream() -> None:
    with make_client(api_settings(max_body_bytes=2000)) as c:
        payload = json.dumps({"model": furniture(description="x" * 3000)}).encode()
        err = assert_error(
            c.post("/v1/solve", content=payload, headers={"content-type": "application/json"}),
            413,
            "body_too_large",
        )
        assert "2000 bytes" in err["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            for i in range(0, len(payload), 500):
                yield payload[i : i + 500]

        r = c.post("/v1/solve", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in r.request.headers
        assert_error(r, 413, "body_too_large")
        # a body under the limit still works
        assert c.post("/v1/solve", json={"lp": LP_TEXT}).status_code == 200


# ----------------------------------------------------------------------------- export and schema


@pytest.mark.parametrize(
    ("fmt", "media", "marker"),
    [
        ("lp", "text/plain", "capacity(wood)"),
        ("mps", "text/plain", "ROWS"),
        ("pyomo", "text/plain", "import pyomo"),
        ("json", "application/json", '"optscribe.model/v1"'),
    ],
)
def test_export_formats(client: TestClient, fmt: str, media: str, marker: str) -> None:
    r = client.post(f"/v1/export?format={fmt}", json={"model": furniture()})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(media)
    assert marker in r.text
    if fmt == "json":
        assert load_model(r.text).name == "workshop"


def test_export_needs_a_known_format(client: TestClient) -> None:
    err = assert_error(
        client.post("/v1/export?format=docx", json={"model": furniture()}), 422, "invalid_request"
    )
    assert err["issues"][0]["where"] == "query.format"
    assert_error(client.post("/v1/export", json={"model": furniture()}), 422, "invalid_request")


def test_schema_endpoint(client: TestClient) -> None:
    r = client.get("/v1/schema/model")
    assert r.status_code == 200
    schema = r.json()
    assert schema["title"] == "optscribe.model/v1"
    assert "variables" in schema["properties"] and "constraints" in schema["properties"]


def test_openapi_and_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/v1/solve", "/v1/formalize", "/v1/export", "/v1/schema/model", "/healthz", "/readyz"):
        assert path in spec["paths"], path
    solve = spec["paths"]["/v1/solve"]["post"]
    assert solve["summary"] and "422" in solve["responses"]
    assert "examples" in json.dumps(spec["components"]["schemas"]["SolveRequest"])
    assert client.get("/docs").status_code == 200


# ----------------------------------------------------------------------------- probes and metrics


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready"
    assert body["checks"]["llm"] == {
        "ok": False,
        "required": False,
        "detail": body["checks"]["llm"]["detail"],
    }
    assert "not configured" in body["checks"]["llm"]["detail"]


def test_readyz_reports_a_required_part_down() -> None:
    def store_down() -> str | None:
        raise ConnectionError("database is locked")

    checks = {
        "store": ReadinessCheck(store_down),
        "queue": ReadinessCheck(lambda: None),
        "cache": ReadinessCheck(lambda: "cold", required=False),
    }
    with make_client(readiness_checks=checks) as c:
        err = assert_error(c.get("/readyz"), 503, "not_ready")
        assert "store" in err["message"]
        got = err["details"]["checks"]
        assert got["store"]["ok"] is False and "database is locked" in got["store"]["detail"]
        assert got["queue"]["ok"] is True and got["cache"]["ok"] is False
    with make_client(readiness_checks={"queue": ReadinessCheck(lambda: None)}) as c:
        assert c.get("/readyz").status_code == 200


def test_readyz_with_llm_required() -> None:
    with make_client(api_settings(ready_requires_llm=True)) as c:
        assert_error(c.get("/readyz"), 503, "not_ready")
    with make_client(stub_settings(ready_requires_llm=True)) as c:
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["checks"]["llm"]["ok"] is True


def test_metrics_text() -> None:
    counts = {"queued": 3, "running": 1, "succeeded": 7}
    with make_client(job_counts=lambda: counts) as c:
        c.post("/v1/solve", json={"model": furniture()})
        c.post("/v1/solve", json={"model": {"bogus": 1}})
        c.get("/no/such/route")
        text = c.get("/metrics").text
    assert 'optscribe_http_requests_total{method="POST",route="/v1/solve",status="200"} 1.0' in text
    assert 'optscribe_http_requests_total{method="POST",route="/v1/solve",status="422"} 1.0' in text
    assert 'route="<unmatched>",status="404"' in text
    assert 'optscribe_http_request_duration_seconds_bucket{le="0.001",method="POST",route="/v1/solve"' in text
    assert "optscribe_solve_seconds_count{" in text and 'status="optimal"' in text
    assert 'optscribe_jobs{status="queued"} 3.0' in text and 'optscribe_jobs{status="succeeded"} 7.0' in text
    assert "# TYPE optscribe_llm_tokens_total counter" in text


def test_metrics_survive_a_failing_jobs_callback(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("store is down")

    with make_client(job_counts=broken) as c, caplog.at_level(logging.ERROR, "optscribe.api"):
        r = c.get("/metrics")
    assert r.status_code == 200 and "# TYPE optscribe_jobs gauge" in r.text
    assert "jobs-by-status callback failed" in caplog.text


# ----------------------------------------------------------------------------- keys and limits

KEY = "osk-test-0123456789"


def test_keys_off_by_default(client: TestClient) -> None:
    assert client.post("/v1/solve", json={"lp": LP_TEXT}).status_code == 200


def test_keys_required() -> None:
    s = api_settings(api_keys_required=True, api_key_hashes=[hash_key(KEY)])
    with make_client(s) as c:
        r = c.post("/v1/solve", json={"lp": LP_TEXT})
        err = assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer" and "X-API-Key" in err["message"]
        r = c.post("/v1/solve", json={"lp": LP_TEXT}, headers={"Authorization": "Bearer nope"})
        assert_error(r, 401, "unauthorized")
        assert (
            c.post("/v1/solve", json={"lp": LP_TEXT}, headers={"Authorization": f"Bearer {KEY}"}).status_code
            == 200
        )
        assert c.post("/v1/solve", json={"lp": LP_TEXT}, headers={"X-API-Key": KEY}).status_code == 200
        # documentation and probes stay open
        for path in ("/v1/schema/model", "/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert c.get(path).status_code == 200, path


def test_key_headers_and_hashes() -> None:
    assert key_from_headers("Bearer abc", None) == "abc"
    assert key_from_headers("bearer  abc ", "other") == "abc"
    assert key_from_headers("Basic abc", "k2") == "k2"
    assert key_from_headers(None, None) is None
    assert hash_key("k") == hashlib.sha256(b"k").hexdigest()
    with pytest.raises(ValueError, match="sha256"):
        api_settings(api_key_hashes=["not-a-digest"])


def test_key_hashes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = hash_key("a"), hash_key("b").upper()
    monkeypatch.setenv("OPTSCRIBE_API_KEY_HASHES", f"{a}, {b}")
    monkeypatch.setenv("OPTSCRIBE_CORS_ORIGINS", "https://a.example,https://b.example")
    s = Settings()
    assert s.api_key_hashes == [a, b.lower()]
    assert s.cors_origins == ["https://a.example", "https://b.example"]


def test_rate_limit_429_with_retry_after() -> None:
    s = api_settings(rate_limit_per_minute=6, rate_limit_burst=2)
    with make_client(s) as c:
        assert c.post("/v1/solve", json={"lp": LP_TEXT}).status_code == 200
        assert c.post("/v1/solve", json={"lp": LP_TEXT}).status_code == 200
        r = c.post("/v1/solve", json={"lp": LP_TEXT})
        err = assert_error(r, 429, "rate_limited")
        assert 1 <= int(r.headers["retry-after"]) <= 10
        assert r.headers["retry-after"] + " s" in err["message"]
        assert c.get("/healthz").status_code == 200  # probes are never limited


def test_rate_limit_is_per_key() -> None:
    other = "osk-other-key"
    s = api_settings(
        api_keys_required=True,
        api_key_hashes=[hash_key(KEY), hash_key(other)],
        rate_limit_per_minute=1,
        rate_limit_burst=1,
    )
    with make_client(s) as c:
        assert c.post("/v1/solve", json={"lp": LP_TEXT}, headers={"X-API-Key": KEY}).status_code == 200
        assert_error(
            c.post("/v1/solve", json={"lp": LP_TEXT}, headers={"X-API-Key": KEY}), 429, "rate_limited"
        )
        assert c.post("/v1/solve", json={"lp": LP_TEXT}, headers={"X-API-Key": other}).status_code == 200
        # guessing keys spends the address's tokens
        assert_error(
            c.post("/v1/solve", json={"lp": LP_TEXT}, headers={"X-API-Key": "guess1"}), 401, "unauthorized"
        )
        assert_error(
            c.post("/v1/solve", json={"lp": LP_TEXT}, headers={"X-API-Key": "guess2"}), 429, "rate_limited"
        )


def test_token_bucket_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0], max_callers=2)
    assert limiter.hit("a") is None and limiter.hit("a") is None
    wait = limiter.hit("a")
    assert wait == pytest.approx(1.0)
    now[0] += 1.0
    assert limiter.hit("a") is None
    limiter.hit("b")
    limiter.hit("c")  # evicts "a", the least recently seen
    assert limiter.hit("a") is None


def test_cors_off_unless_configured() -> None:
    headers = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    with make_client() as c:
        r = c.options("/v1/solve", headers=headers)
        assert "access-control-allow-origin" not in r.headers
    with make_client(api_settings(cors_origins=["https://app.example"])) as c:
        r = c.options("/v1/solve", headers=headers)
        assert r.headers["access-control-allow-origin"] == "https://app.example"


# ----------------------------------------------------------------------------- errors


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_error(client.get("/v2/nothing"), 404, "not_found")
    assert_error(client.get("/v1/solve"), 405, "method_not_allowed")


def test_unexpected_exception_is_500_without_traceback(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import app.api.routes_sync as routes

    def explode(*args: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(routes, "solve_small", explode)
    with caplog.at_level(logging.ERROR, "optscribe.api"):
        r = client.post("/v1/solve", json={"model": furniture()})
    err = assert_error(r, 500, "internal")
    assert "secret" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    assert "secret internal detail" in caplog.text  # logged, with its traceback, for the operator
    text = client.get("/metrics").text
    assert 'route="/v1/solve",status="500"' in text
    assert err["message"]


# ----------------------------------------------------------------------------- formalize


TEXT = WORKSHOP_TEXT


def test_formalize_without_llm_is_503(client: TestClient) -> None:
    err = assert_error(client.post("/v1/formalize", json={"text": TEXT}), 503, "llm_not_configured")
    assert "OPTSCRIBE_LLM_MODEL" in err["message"] and "Ollama" in err["message"]


def scripted_app(llm: ScriptedLLM, **changes: Any) -> tuple[FastAPI, Callable[[], None]]:
    settings = stub_settings(**changes)
    application = create_app(settings)
    llm_client = llm.client(settings)
    application.dependency_overrides[get_llm_client] = lambda: llm_client
    return application, llm_client.close


def test_formalize_with_the_scripted_llm() -> None:
    llm = ScriptedLLM(answer(llm_json(furniture()), prompt_tokens=100, completion_tokens=50))
    application, close = scripted_app(llm)
    try:
        with TestClient(application) as c:
            r = c.post("/v1/formalize", json={"text": TEXT})
            assert r.status_code == 200, r.text
            out = r.json()
            metrics = c.get("/metrics").text
    finally:
        close()
    assert out["status"] == "solved"
    assert load_model(out["model"]).constraints[0].id == "capacity"
    assert out["issues"] == [] or all(i["severity"] != "error" for i in out["issues"])
    assert out["result"]["objective"] == pytest.approx(1350)
    assert out["usage"] == {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150, "calls": 1}
    assert TEXT in json.dumps(llm.body(0)["messages"])
    assert 'optscribe_llm_tokens_total{kind="prompt"} 100.0' in metrics
    assert 'optscribe_llm_tokens_total{kind="completion"} 50.0' in metrics


def test_formalize_with_tables_and_bad_output() -> None:
    llm = ScriptedLLM("not json at all", "still not json", "nope")
    application, close = scripted_app(llm, llm_max_retries=2)
    try:
        with TestClient(application) as c:
            body = {"text": TEXT, "tables": {"routes": {"csv": "origin,dest,cost\na,b,3\n"}}}
            err = assert_error(c.post("/v1/formalize", json=body), 502, "llm_bad_output")
            assert err["details"]["usage"]["calls"] == 3 and err["details"]["usage"]["total_tokens"] == 45
            assert 'optscribe_llm_tokens_total{kind="prompt"} 30.0' in c.get("/metrics").text
            assert "routes" in json.dumps(llm.body(0)["messages"])
            # a table that is not one
            bad = {"text": TEXT, "tables": {"t": {"csv": "a", "records": []}}}
            assert_error(c.post("/v1/formalize", json=bad), 422, "invalid_request")
            assert_error(c.post("/v1/formalize", json={"text": ""}), 422, "invalid_request")
    finally:
        close()


# ----------------------------------------------------------------------------- a real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server() -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_app(api_settings(max_body_bytes=50_000)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


def test_real_server(server: str) -> None:
    with httpx2.Client(base_url=server, timeout=30) as http:
        r = http.post("/v1/solve", json={"model": furniture()})
        assert r.status_code == 200, r.text
        assert r.json()["objective"] == pytest.approx(1350)
        r = http.post("/v1/solve", json={"model": staffing()})
        assert r.json()["status"] == "infeasible"
        assert http.get("/healthz").json() == {"status": "ok"}
        err = http.get("/nowhere").json()["error"]
        assert err["code"] == "not_found"

        big = json.dumps({"model": furniture(description="x" * 60_000)}).encode()

        def chunks() -> Iterator[bytes]:
            for i in range(0, len(big), 4096):
                yield big[i : i + 4096]

        r = http.post("/v1/solve", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        r = http.post("/v1/solve", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413
        # the server still answers afterwards
        assert http.post("/v1/solve", json={"lp": LP_TEXT}).json()["objective"] == pytest.approx(11)
        assert 'route="/v1/solve",status="413"' in http.get("/metrics").text


def test_a_solve_does_not_block_the_event_loop(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.api.routes_sync as routes

    real = routes.solve_small
    started = threading.Event()

    def slow(*args: Any) -> Any:
        started.set()
        time.sleep(1.5)
        return real(*args)

    monkeypatch.setattr(routes, "solve_small", slow)
    answers: list[int] = []
    with httpx2.Client(base_url=server, timeout=30) as http:
        worker = threading.Thread(
            target=lambda: answers.append(http.post("/v1/solve", json={"lp": LP_TEXT}).status_code)
        )
        worker.start()
        assert started.wait(10)
        t0 = time.monotonic()
        with httpx2.Client(base_url=server, timeout=30) as other:
            assert other.get("/healthz").status_code == 200
            assert other.get("/readyz").status_code == 200
        assert time.monotonic() - t0 < 1.0
        worker.join(30)
    assert answers == [200]


def test_serve_command_is_registered() -> None:
    from app.cli import app as cli

    r = CliRunner().invoke(cli, ["serve", "--help"])
    assert r.exit_code == 0
    assert "--host" in r.output and "--port" in r.output
