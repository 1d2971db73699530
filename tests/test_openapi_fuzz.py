"""The API against its own OpenAPI schema: generated requests, in process, never a 5xx.

Schemathesis reads ``/openapi.json`` from the app and, for every operation, sends the
schema's examples, its coverage cases (boundary values, missing and wrong-typed fields,
unexpected methods) and Hypothesis-generated requests, valid and invalid, to an app with
a real SQLite job store, API keys required and no LLM: about 900 requests in all, from a
fixed seed, so a run is repeatable (some 20 s of CPU). Each answer must:

* never be a 5xx, except ``POST /v1/formalize``'s documented ``503 llm_not_configured``;
* have a documented status code, content type, headers and body (the ``*_conformance``
  checks), with ``Allow`` naming every method of the path on a 405;
* reject what violates the schema (``negative_data_rejection``) and require the key
  (``ignored_auth``: schemathesis resends without it, and with a wrong one).

Left out: ``positive_data_acceptance``, because the model contract has rules JSON Schema
cannot state (names are identifiers, ranges ascend, ids are unique, exactly one of
``model``/``lp``/``mps``); a generated model that breaks them is rightly a 422 with
issues. And the coverage phase of ``POST /v1/solve`` and ``POST /v1/export``, whose model
contract alone yields some 1,100 coverage cases each; their fuzzing phase still runs.

Below the fuzzing, one plain test per bug it found, with the request that found it.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from app.api import create_app
from app.api.security import hash_key
from app.jobs.store import JobStore
from app.settings import Settings

KEY = "fuzz-key-" + "k" * 24
AUTH = {"Authorization": f"Bearer {KEY}"}
SEED = 20240611
# Hypothesis examples in the fuzzing phase, per operation, valid and invalid together.
MAX_EXAMPLES = 25
MAX_EXAMPLES_MODEL = 60  # solve and export, which have no coverage phase

# negative_data_rejection's own list of statuses that reject a request (schemathesis 4.32).
REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx"]

# Per operation, the requests sent from test_fuzz (schemathesis's own resends not counted).
SENT: collections.Counter[str] = collections.Counter()


def fuzz_settings(data_dir: Path) -> Settings:
    """Independent of the environment: keys required, no LLM, no rate limit, no workers."""
    return Settings(
        llm_base_url=None,
        llm_api_key=None,
        llm_model=None,
        llm_cache_dir=None,
        api_keys_required=True,
        api_key_hashes=[hash_key(KEY)],
        rate_limit_per_minute=None,
        cors_origins=[],
        ready_requires_llm=False,
        max_body_bytes=1_000_000,
        sync_time_limit_default=2.0,
        sync_time_limit_max=5.0,
        sync_model_max_variables=10_000,
        sync_model_max_nonzeros=200_000,
        data_dir=data_dir,
        job_store_url=None,
        workers=0,
    )


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
        "checks": {
            # Replaced by no_server_error below, which allows formalize's 503 and nothing else.
            "not_a_server_error": {"enabled": False},
            "positive_data_acceptance": {"enabled": False},  # see the module docstring
            # Schemathesis's list of rejections, plus 413: an invalid body can be too large.
            # (Its 5xx stays: formalize's 503 comes before the body is looked at, and any
            # other 5xx fails no_server_error.)
            "negative_data_rejection": {"expected-statuses": [*REJECTIONS, "413"]},
        },
        "auth": {"openapi": {"HTTPBearer": {"bearer": KEY}}},
        "operations": [
            {
                "include-path": ["/v1/solve", "/v1/export"],
                "phases": {"coverage": {"enabled": False}},
                "generation": {"max-examples": MAX_EXAMPLES_MODEL},
            }
        ],
    }
)

# The schema is read at import, for pytest to make one test per operation. Its app needs no
# store (the routes and the schema are the same); the requests go to ``fuzz_app``.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(fuzz_settings(Path("/nonexistent"))), config=CONFIG
)
OPERATIONS = {op.ok().label for op in schema.get_all_operations()}


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    data = tmp_path_factory.mktemp("fuzz")
    store = JobStore.in_data_dir(data)
    try:
        yield create_app(fuzz_settings(data), job_store=store)
    finally:
        store.close()


def no_server_error(ctx: Any, response: Any, case: Any) -> None:
    """No 5xx, but for formalize's documented answer when no LLM is configured."""
    if response.status_code < 500:
        return
    if case.operation.label == "POST /v1/formalize" and response.status_code == 503:
        code = response.json()["error"]["code"]
        assert code == "llm_not_configured", f"formalize answered 503 {code}"
        return
    raise AssertionError(f"server error {response.status_code}: {response.text[:500]}")


@schema.parametrize()
@settings(
    deadline=None,  # a solve or a cold import may take a second on a busy machine
    database=None,  # no replay of past failures: the run depends on the seed alone
    # Generating from the model contract's large schema is slow and filters a lot; both
    # are expected here and say nothing about the API.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_fuzz(case: Any, fuzz_app: FastAPI) -> None:
    SENT[case.operation.label] += 1
    case.call_and_validate(app=fuzz_app, additional_checks=[no_server_error])


def test_fuzz_sent_a_few_hundred_requests() -> None:
    """Runs after test_fuzz (file order); skipped when only some operations were fuzzed."""
    if set(SENT) != OPERATIONS:
        pytest.skip("the fuzzing of every operation did not run in this session")
    assert sum(SENT.values()) >= 300, dict(SENT)


# ----------------------------------------------------------------------------- regressions


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    store = JobStore.in_data_dir(tmp_path)
    try:
        with TestClient(create_app(fuzz_settings(tmp_path), job_store=store), headers=AUTH) as c:
            yield c
    finally:
        store.close()


def assert_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err: dict[str, Any] = r.json()["error"]
    assert err["code"] == code, err
    return err


@pytest.mark.parametrize("path", ["/v1/solve", "/v1/export?format=lp", "/v1/formalize", "/v1/jobs"])
def test_a_body_that_is_not_utf8_is_invalid_json(client: TestClient, path: str) -> None:
    # Found as `curl -X POST -H 'Content-Type: application/json' -d $'WA\xff\n\xfe\xc3'
    # '.../v1/export?format=json'`: FastAPI's bare 400 "There was an error parsing the body",
    # a status no route documents, where '{"model": {' gets 422 invalid_json.
    r = client.post(path, content=b'{"lp": "\xff\xfe"}', headers={"content-type": "application/json"})
    err = assert_error(r, 422, "invalid_json")
    assert err["issues"][0]["code"] == "json"
    assert "not UTF-8" in err["issues"][0]["message"]


def test_json_nested_too_deeply_is_invalid_json(client: TestClient) -> None:
    # The same bare 400, from json.loads's RecursionError.
    deep = b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = client.post("/v1/solve", content=deep, headers={"content-type": "application/json"})
    err = assert_error(r, 422, "invalid_json")
    assert "nested too deeply" in err["issues"][0]["message"]


def test_a_broken_multipart_batch_is_a_422(client: TestClient) -> None:
    # Found as `curl -X POST -H 'Content-Type: multipart/form-data; boundary=7c51...'
    # -d $'--7c51...\r\nNone--7c51...--\r\n' .../v1/batches`: Starlette's bare 400
    # "Invalid multipart data.", undocumented, where every other unusable upload is a 422.
    boundary = "7c5156fb04a2177cf9e322ad31ebde44"
    body = f"--{boundary}\r\nNone--{boundary}--\r\n".encode()
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    err = assert_error(client.post("/v1/batches", content=body, headers=headers), 422, "invalid_request")
    assert err["issues"][0]["code"] == "multipart"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/v1/jobs", "GET, HEAD, POST"),
        ("DELETE", "/v1/jobs/some-job", "GET, HEAD"),
        ("PUT", "/v1/solve", "POST"),
    ],
)
def test_405_allow_names_every_method_of_the_path(
    client: TestClient, method: str, path: str, allowed: str
) -> None:
    # Found as `curl -X OPTIONS .../v1/jobs`: `Allow: POST`, although GET /v1/jobs exists
    # (Starlette names the methods of the first route that matches the path only).
    r = client.request(method, path)
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == allowed


@pytest.mark.parametrize("value", [False, True])
def test_true_and_false_are_not_numbers_in_the_model(client: TestClient, value: bool) -> None:
    # Found as `curl -X POST .../v1/solve -d '{"model": {"parameters": {"k": {"value":
    # false}}, "schema": "optscribe.model/v1"}}'`: 200, the parameter read as 0, although
    # the schema says number and the same false inside 'values' is refused.
    model = {"schema": "optscribe.model/v1", "parameters": {"k": {"value": value}}}
    err = assert_error(client.post("/v1/solve", json={"model": model}), 422, "invalid_request")
    assert err["issues"][0]["where"] == "model.parameters.k.value"
    assert "true/false is not a number" in err["issues"][0]["message"]
    bound = {"schema": "optscribe.model/v1", "variables": [{"name": "x", "upper": value}]}
    assert_error(client.post("/v1/solve", json={"model": bound}), 422, "invalid_request")


def test_formalize_without_an_llm_is_a_clean_503(client: TestClient) -> None:
    # What the fuzzing allows formalize: the documented 503, never a 500.
    err = assert_error(client.post("/v1/formalize", json={"text": "0"}), 503, "llm_not_configured")
    assert err["details"]["reason"]
