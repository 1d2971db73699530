"""The LLM client against a scripted endpoint: the real ``openai`` client, no network, no LLM.

Every test goes through ``tests/llm_stub.py``'s ``httpx2.MockTransport``; sockets are shut for
the whole module, so a request that slipped past the transport would fail loudly.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx2
import openai
import pytest
from llm_stub import (
    BASE_URL,
    MODEL,
    Reply,
    ScriptedLLM,
    answer,
    cache_files,
    chat_response,
    error,
    stub_settings,
)
from pydantic import BaseModel, ConfigDict, Field

from app.errors import (
    AppError,
    FormalizationFailed,
    LLMBadOutput,
    LLMBudgetExceeded,
    LLMError,
    LLMNotConfigured,
    LLMUnavailable,
)
from app.formalize.llm import Budget, LLMClient, Usage, extract_json, strict_json_schema
from app.settings import Settings, clear_settings_cache, get_settings, override_settings


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: int
    y: int = 0
    label: str | None = None


GOOD = '{"x": 1, "y": 2, "label": "a"}'
MESSAGES = [
    {"role": "system", "content": "You locate points."},
    {"role": "user", "content": "Where is the point?"},
]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any real connection attempt fails the test: only the scripted transport may answer."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a test tried to reach the network: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPTSCRIBE_LLM_API_KEY",
        "OPTSCRIBE_LLM_BASE_URL",
        "OPTSCRIBE_LLM_MODEL",
        "OPTSCRIBE_LLM_CACHE_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    clear_settings_cache()
    yield monkeypatch
    clear_settings_cache()


# -- the stub itself -------------------------------------------------------------------------------


def test_the_scripted_transport_answers_and_nothing_else() -> None:
    llm = ScriptedLLM(GOOD, answer(GOOD))
    with llm.client() as client:
        a = client.complete_json(MESSAGES, Point, name="point")
        b = client.complete_json([{"role": "user", "content": "again"}], Point, name="point")
    # One request per call, all to the scripted endpoint (whose host does not even resolve).
    assert llm.count == a.attempts + b.attempts == 2
    assert llm.left == 0
    for request in llm.requests:
        assert str(request.url) == f"{BASE_URL}/chat/completions"
        assert request.headers["authorization"] == "Bearer sk-test"
    assert llm.body(0)["messages"] == MESSAGES


def test_a_request_beyond_the_script_fails_loudly() -> None:
    llm = ScriptedLLM()
    with llm.client() as client, pytest.raises(AssertionError, match="beyond its script"):
        client.complete_json(MESSAGES, Point, name="point")


def test_chat_response_is_a_valid_openai_body() -> None:
    body = chat_response("hi", prompt_tokens=7, completion_tokens=3)
    completion = openai.types.chat.ChatCompletion.model_validate(body)
    assert completion.choices[0].message.content == "hi"
    assert completion.usage is not None and completion.usage.total_tokens == 10


# -- answers ---------------------------------------------------------------------------------------


def test_right_answer_first_time() -> None:
    llm = ScriptedLLM(answer(GOOD, prompt_tokens=12, completion_tokens=8))
    with llm.client() as client:
        a = client.complete_json(MESSAGES, Point, name="point")
        assert a.value == Point(x=1, y=2, label="a")
        assert a.raw == GOOD
        assert a.usage == Usage(12, 8, 20, 1)
        assert (a.mode, a.cached, a.attempts) == ("json_schema", False, 1)
        assert client.usage == a.usage
    body = llm.body()
    assert body["model"] == MODEL
    assert body["temperature"] == 0.0
    assert body["max_tokens"] == 1024
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "point"
    assert fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["x", "y", "label"]
    # In json_schema mode the prompt is sent as written.
    assert body["messages"] == MESSAGES


def test_temperature_per_call_and_none_sends_none() -> None:
    llm = ScriptedLLM(GOOD, GOOD)
    with llm.client(llm_temperature=None, llm_max_tokens=None) as client:
        client.complete_json(MESSAGES, Point, name="point")
        client.complete_json(MESSAGES, Point, name="point", temperature=0.7)
    assert "temperature" not in llm.body(0) and "max_tokens" not in llm.body(0)
    assert llm.body(1)["temperature"] == 0.7


def test_wrong_then_right_reasks_with_the_errors() -> None:
    llm = ScriptedLLM(
        "Sure! Here it is: {x: 1",  # not JSON
        '{"x": "abc", "z": 1}',  # JSON, but not a Point
        GOOD,
    )
    with llm.client() as client:
        a = client.complete_json(MESSAGES, Point, name="point")
    assert a.value.x == 1
    assert a.attempts == 3
    assert a.usage == Usage(30, 15, 45, 3)
    second = llm.messages(1)
    assert second[:2] == MESSAGES
    assert second[2] == {"role": "assistant", "content": "Sure! Here it is: {x: 1"}
    assert second[3]["role"] == "user"
    assert "not valid JSON" in second[3]["content"]
    third = llm.messages(2)
    assert len(third) == 6
    reask = third[5]["content"]
    assert "at x: Input should be a valid integer" in reask
    assert '(got "abc")' in reask
    assert "at z: Extra inputs are not permitted" in reask
    assert "corrected JSON object" in reask


def test_garbage_every_time_is_bad_output_with_evidence() -> None:
    garbage = ["I cannot do that.", "The answer is 42.", '{"y": "nope"}']
    llm = ScriptedLLM(*garbage)
    with llm.client(llm_max_retries=2) as client:
        with pytest.raises(LLMBadOutput) as caught:
            client.complete_json(MESSAGES, Point, name="point")
        assert client.usage == Usage(30, 15, 45, 3)
    e = caught.value
    assert llm.count == 3
    assert e.attempts == 3
    assert e.usage == Usage(30, 15, 45, 3)
    assert e.last_raw == garbage[-1]
    assert any("at x: Field required" in x for x in e.errors)
    assert "'point'" in str(e) and "3 answers" in str(e)
    assert isinstance(e, LLMError) and isinstance(e, AppError)


def test_cut_off_answer_says_so_in_the_reask() -> None:
    llm = ScriptedLLM(answer('{"x": 1, "y"', finish_reason="length"), GOOD)
    with llm.client() as client:
        client.complete_json(MESSAGES, Point, name="point")
    assert "cut off at the token limit" in llm.messages(1)[-1]["content"]


def test_refusal_and_empty_content_are_bad_answers() -> None:
    refusal = chat_response(None)
    refusal["choices"][0]["message"]["refusal"] = "I can't help with that."
    llm = ScriptedLLM(Reply(json=refusal), answer(""), GOOD)
    with llm.client() as client:
        a = client.complete_json(MESSAGES, Point, name="point")
    assert a.attempts == 3
    assert llm.messages(1)[2]["content"] == "I can't help with that."
    assert "empty" in llm.messages(2)[-1]["content"]


# -- transport failures and retries ----------------------------------------------------------------


def test_429_then_200_retries_after_the_backoff() -> None:
    llm = ScriptedLLM(error(429, "Rate limit reached"), GOOD)
    with llm.client(llm_backoff_base_s=0.05, llm_backoff_max_s=1.0) as client:
        a = client.complete_json(MESSAGES, Point, name="point")
    assert a.attempts == 2 and llm.count == 2
    assert a.usage.calls == 1  # the 429 cost nothing
    # Backoff is the base delay less at most 25% jitter.
    assert llm.times[1] - llm.times[0] >= 0.05 * 0.75


def test_retry_after_header_is_honoured() -> None:
    llm = ScriptedLLM(error(429, headers={"retry-after": "0.15"}), GOOD)
    with llm.client(llm_backoff_base_s=0.001, llm_backoff_max_s=1.0) as client:
        client.complete_json(MESSAGES, Point, name="point")
    assert llm.times[1] - llm.times[0] >= 0.15


def test_500_every_time_is_unavailable_naming_the_url() -> None:
    llm = ScriptedLLM(*[error(500, text="Internal Server Error")] * 4)
    with llm.client(llm_max_retries=2) as client:
        with pytest.raises(LLMUnavailable) as caught:
            client.complete_json(MESSAGES, Point, name="point")
        # A 5xx to json_schema is asked once in json_object (the llama.cpp case); when that
        # fails too, the server is down, and json_schema stays the mode.
        assert llm.response_formats() == ["json_schema", "json_object", "json_schema", "json_schema"]
        assert client.mode == "json_schema"
    e = caught.value
    assert llm.count == e.attempts == 4
    assert e.url == BASE_URL
    assert e.status_code == 500
    assert "HTTP 500" in e.last_error
    assert BASE_URL in str(e) and "after 4 attempts" in str(e)


def test_500s_in_plain_mode_are_retried_max_retries_times() -> None:
    llm = ScriptedLLM(*[error(503)] * 4)
    with llm.client(llm_max_retries=3, llm_structured_mode="plain") as client:
        with pytest.raises(LLMUnavailable):
            client.complete_json(MESSAGES, Point, name="point")
    assert llm.count == 4


def test_timeouts_are_retried_then_unavailable() -> None:
    llm = ScriptedLLM(*[httpx2.ReadTimeout("read timed out") for _ in range(3)])
    with llm.client(llm_max_retries=2, llm_timeout=7.0) as client:
        with pytest.raises(LLMUnavailable) as caught:
            client.complete_json(MESSAGES, Point, name="point")
    assert llm.count == 3
    assert "timed out after 7 s" in caught.value.last_error
    assert llm.timeouts() == [7.0, 7.0, 7.0]


def test_a_timeout_then_an_answer() -> None:
    llm = ScriptedLLM(httpx2.ConnectTimeout("connect timed out"), httpx2.ConnectError("refused"), GOOD)
    with llm.client() as client:
        a = client.complete_json(MESSAGES, Point, name="point")
    assert a.attempts == 3 and a.value.x == 1


def test_connection_errors_say_what_failed() -> None:
    llm = ScriptedLLM(httpx2.ConnectError("[Errno 111] Connection refused"))
    with llm.client(llm_max_retries=0) as client:
        with pytest.raises(LLMUnavailable, match="Connection refused"):
            client.complete_json(MESSAGES, Point, name="point")


def test_a_200_without_a_completion_is_retried() -> None:
    llm = ScriptedLLM(Reply(200, text="<html>proxy error</html>"), Reply(200, json={"error": "busy"}), GOOD)
    with llm.client() as client:
        a = client.complete_json(MESSAGES, Point, name="point")
    assert a.attempts == 3 and a.usage.calls == 1


def test_the_openai_clients_own_retries_are_off() -> None:
    # Even an injected client built with max_retries=5 sends exactly our count of requests.
    llm = ScriptedLLM(*[error(500)] * 3)
    http = openai.DefaultHttpxClient(transport=llm.transport)
    with openai.OpenAI(api_key="k", base_url=BASE_URL, max_retries=5, http_client=http) as injected:
        with LLMClient(
            stub_settings(llm_max_retries=2, llm_structured_mode="plain"), openai_client=injected
        ) as c:
            with pytest.raises(LLMUnavailable):
                c.complete_json(MESSAGES, Point, name="point")
        assert llm.count == 3
        assert not injected.is_closed()  # an injected client stays the caller's


# -- structured-output modes -----------------------------------------------------------------------


def test_json_schema_500_degrades_to_json_object_and_remembers() -> None:
    llm = ScriptedLLM(error(500, text="Internal Server Error"), GOOD, GOOD)
    with llm.client() as client:
        a = client.complete_json(MESSAGES, Point, name="point")
        assert (a.mode, a.attempts) == ("json_object", 2)
        assert client.mode == "json_object"
        b = client.complete_json(MESSAGES, Point, name="point")
        assert (b.mode, b.attempts) == ("json_object", 1)
    assert llm.response_formats() == ["json_schema", "json_object", "json_object"]
    fmt = llm.body(1)["response_format"]
    assert fmt == {"type": "json_object", "schema": Point.model_json_schema()}
    # The schema also travels in the (single) system message.
    messages = llm.messages(1)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"].startswith("You locate points.")
    assert '"required": ["x"]' in messages[0]["content"]


def test_json_object_rejected_with_400_goes_plain() -> None:
    llm = ScriptedLLM(
        error(400, "response_format json_schema is not supported"),
        error(400, "response_format json_object is not supported"),
        GOOD,
        GOOD,
    )
    with llm.client(llm_max_retries=0) as client:
        a = client.complete_json([{"role": "user", "content": "Where?"}], Point, name="point")
        assert a.mode == "plain" and client.mode == "plain"
        client.complete_json([{"role": "user", "content": "Where?"}], Point, name="point")
    # Refusals of a mode are not retries: they pass even with llm_max_retries=0.
    assert llm.response_formats() == ["json_schema", "json_object", None, None]
    plain = llm.messages(2)
    assert plain[0]["role"] == "system" and "JSON Schema" in plain[0]["content"]
    assert plain[1] == {"role": "user", "content": "Where?"}


def test_llama_cpp_chain_500_then_400_then_plain() -> None:
    llm = ScriptedLLM(error(500), error(422), GOOD)
    with llm.client() as client:
        assert client.complete_json(MESSAGES, Point, name="point").mode == "plain"
    assert llm.response_formats() == ["json_schema", "json_object", None]


def test_a_pinned_mode_is_not_abandoned() -> None:
    llm = ScriptedLLM(error(400, "json_schema not supported"))
    with llm.client(llm_structured_mode="json_schema") as client:
        with pytest.raises(LLMUnavailable, match="OPTSCRIBE_LLM_STRUCTURED_MODE=auto") as caught:
            client.complete_json(MESSAGES, Point, name="point")
    assert caught.value.status_code == 400
    assert "refused the request in json_schema mode" in str(caught.value)


def test_a_pinned_json_object_mode_starts_there() -> None:
    llm = ScriptedLLM(GOOD)
    with llm.client(llm_structured_mode="json_object") as client:
        assert client.complete_json(MESSAGES, Point, name="point").mode == "json_object"
    assert llm.response_formats() == ["json_object"]


def test_a_model_that_cannot_be_strict_is_sent_with_strict_false() -> None:
    class Table(BaseModel):
        values: dict[str, float]

    llm = ScriptedLLM('{"values": {"a": 1}}')
    with llm.client() as client:
        client.complete_json(MESSAGES, Table, name="table")
    js = llm.body()["response_format"]["json_schema"]
    assert js["strict"] is False
    assert js["schema"] == Table.model_json_schema()


# -- configuration ---------------------------------------------------------------------------------


def test_no_model_is_not_configured_with_the_advice() -> None:
    with pytest.raises(LLMNotConfigured) as caught:
        LLMClient(stub_settings(llm_model=None))
    text = str(caught.value)
    for needle in (
        "OPTSCRIBE_LLM_MODEL",
        "OPTSCRIBE_LLM_BASE_URL",
        "OPENAI_API_KEY",
        "http://localhost:11434/v1",
        "http://localhost:8080/v1",
    ):
        assert needle in text


def test_openai_without_a_key_is_not_configured() -> None:
    with pytest.raises(LLMNotConfigured, match="no API key for https://api.openai.com/v1"):
        LLMClient(stub_settings(llm_base_url=None, llm_api_key=None))


def test_a_local_server_needs_no_key() -> None:
    llm = ScriptedLLM(GOOD)
    with llm.client(llm_base_url="http://localhost:11434/v1", llm_api_key=None) as client:
        client.complete_json(MESSAGES, Point, name="point")
    assert llm.requests[0].url.host == "localhost"
    assert llm.requests[0].headers["authorization"] == "Bearer not-needed"


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_rejected_key_or_unknown_model_is_a_configuration_error(status: int) -> None:
    llm = ScriptedLLM(error(status, "nope"))
    with llm.client() as client:
        with pytest.raises(LLMNotConfigured, match=f"HTTP {status}: nope"):
            client.complete_json(MESSAGES, Point, name="point")
    assert llm.count == 1


def test_openai_environment_variables_are_honoured(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENAI_API_KEY", "sk-from-env")
    clean_env.setenv("OPENAI_BASE_URL", "http://env-llm.invalid/v1")
    clean_env.setenv("OPTSCRIBE_LLM_MODEL", "env-model")
    clean_env.setenv("OPTSCRIBE_LLM_TIMEOUT", "12.5")
    settings = get_settings()
    assert settings.llm_model == "env-model" and settings.llm_timeout == 12.5
    llm = ScriptedLLM(GOOD)
    with LLMClient(settings, transport=llm.transport) as client:
        client.complete_json(MESSAGES, Point, name="point")
    request = llm.requests[0]
    assert str(request.url) == "http://env-llm.invalid/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-from-env"
    assert llm.body()["model"] == "env-model"
    assert llm.timeouts() == [12.5]


def test_optscribe_variables_win_over_openai_ones(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENAI_API_KEY", "sk-openai")
    clean_env.setenv("OPENAI_BASE_URL", "http://openai.invalid/v1")
    clean_env.setenv("OPTSCRIBE_LLM_API_KEY", "sk-optscribe")
    clean_env.setenv("OPTSCRIBE_LLM_BASE_URL", "http://optscribe.invalid/v1")
    clean_env.setenv("OPTSCRIBE_LLM_CACHE_DIR", "")  # empty means unset
    s = Settings()
    assert s.llm_base_url == "http://optscribe.invalid/v1"
    assert s.llm_api_key is not None and s.llm_api_key.get_secret_value() == "sk-optscribe"
    assert s.llm_cache_dir is None


def test_settings_defaults_and_overrides(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert (s.llm_max_retries, s.llm_total_budget_s, s.repair_rounds, s.samples) == (3, 300.0, 3, 1)
    assert s.llm_structured_mode == "auto" and s.llm_cache_dir is None and s.llm_model is None
    assert get_settings() is get_settings()  # cached
    with override_settings(llm_model="m", samples=3) as o:
        assert get_settings() is o and o.samples == 3
    assert get_settings().llm_model is None
    with pytest.raises(ValueError):
        Settings(llm_structured_mode="xml")
    clean_env.setenv("OPTSCRIBE_LLM_TEMPERATURE", "none")
    assert Settings().llm_temperature is None


# -- cache -----------------------------------------------------------------------------------------


def test_cache_hit_costs_nothing(tmp_path: Path) -> None:
    llm = ScriptedLLM(GOOD, GOOD, GOOD)
    with llm.client(llm_cache_dir=tmp_path) as client:
        first = client.complete_json(MESSAGES, Point, name="point")
        second = client.complete_json(MESSAGES, Point, name="point")
        assert llm.count == 1
        assert second.cached and not first.cached
        assert second.value == first.value and second.raw == first.raw
        assert second.usage == Usage() and second.attempts == 0
        assert client.usage == first.usage
        # Any change of messages, parameters or sample number is another entry.
        client.complete_json(MESSAGES, Point, name="point", temperature=0.5)
        client.complete_json(MESSAGES, Point, name="point", sample=1)
        assert llm.count == 3
    assert len(cache_files(tmp_path)) == 3
    entry = json.loads(cache_files(tmp_path)[0].read_text())
    assert entry["model"] == MODEL and "value" in entry and "raw" in entry


def test_a_new_client_reads_the_cache_and_a_damaged_entry_is_a_miss(tmp_path: Path) -> None:
    with ScriptedLLM(GOOD).client(llm_cache_dir=tmp_path) as client:
        client.complete_json(MESSAGES, Point, name="point")
    with ScriptedLLM().client(llm_cache_dir=tmp_path) as client:
        assert client.complete_json(MESSAGES, Point, name="point").cached
    (path,) = cache_files(tmp_path)
    path.write_text("{not json")
    llm = ScriptedLLM(GOOD)
    with llm.client(llm_cache_dir=tmp_path) as client:
        assert not client.complete_json(MESSAGES, Point, name="point").cached
    assert llm.count == 1
    assert json.loads(path.read_text())["value"] == {"x": 1, "y": 2, "label": "a"}


def test_without_a_cache_dir_nothing_is_cached() -> None:
    llm = ScriptedLLM(GOOD, GOOD)
    with llm.client() as client:
        client.complete_json(MESSAGES, Point, name="point")
        assert not client.complete_json(MESSAGES, Point, name="point").cached
    assert llm.count == 2


# -- the time budget -------------------------------------------------------------------------------


def test_the_total_time_budget_stops_retries() -> None:
    llm = ScriptedLLM(*[error(500, delay=0.05) for _ in range(50)])
    with llm.client(
        llm_total_budget_s=0.3,
        llm_max_retries=50,
        llm_backoff_base_s=0.05,
        llm_backoff_max_s=0.05,
        llm_structured_mode="plain",
    ) as client:
        start = time.monotonic()
        with pytest.raises(LLMBudgetExceeded) as caught:
            client.complete_json(MESSAGES, Point, name="point")
        elapsed = time.monotonic() - start
    assert isinstance(caught.value, LLMUnavailable)
    assert elapsed < 0.3 + 0.15
    assert 2 <= llm.count < 50
    assert "time budget of 0.3 s" in str(caught.value)
    # Each request may take only what is left of the budget.
    timeouts = [t for t in llm.timeouts() if t is not None]
    assert all(t <= 0.3 for t in timeouts)
    assert timeouts == sorted(timeouts, reverse=True)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_one_budget_is_shared_by_the_calls_of_a_formalization() -> None:
    clock = FakeClock()

    def slow(request: httpx2.Request) -> str:
        clock.now += 10  # each answer takes ten (fake) seconds
        return GOOD

    llm = ScriptedLLM(slow, slow, slow)
    settings = stub_settings(llm_timeout=60.0)
    with LLMClient(settings, transport=llm.transport, clock=clock, sleep=clock.sleep) as client:
        budget = client.budget(25)
        assert isinstance(budget, Budget)
        for _ in range(3):
            client.complete_json(MESSAGES, Point, name="point", budget=budget)
        # The third request was allowed only the 5 s left.
        assert llm.timeouts() == [25.0, 15.0, 5.0]
        with pytest.raises(LLMBudgetExceeded) as caught:
            client.complete_json(MESSAGES, Point, name="point", budget=budget)
    assert caught.value.attempts == 0
    assert llm.count == 3


def test_the_budget_also_bounds_reasks() -> None:
    clock = FakeClock()

    def slow_garbage(request: httpx2.Request) -> str:
        clock.now += 10
        return f"not yet ({clock.now:g})"

    llm = ScriptedLLM(*[slow_garbage] * 10)
    settings = stub_settings(llm_max_retries=10)
    with LLMClient(settings, transport=llm.transport, clock=clock, sleep=clock.sleep) as client:
        with pytest.raises(LLMBudgetExceeded) as caught:
            client.complete_json(MESSAGES, Point, name="point", budget=client.budget(25))
    e = caught.value
    assert llm.count == e.attempts == 3
    assert e.last_raw == "not yet (30)"
    assert e.usage is not None and e.usage.calls == 3
    assert "unusable answer" in e.last_error


def test_a_backoff_longer_than_the_budget_left_gives_up_at_once() -> None:
    clock = FakeClock()
    llm = ScriptedLLM(error(429, headers={"retry-after": "20"}))
    settings = stub_settings(llm_backoff_max_s=30.0, llm_structured_mode="plain")
    with LLMClient(settings, transport=llm.transport, clock=clock, sleep=clock.sleep) as client:
        with pytest.raises(LLMBudgetExceeded):
            client.complete_json(MESSAGES, Point, name="point", budget=client.budget(10))
    assert clock.now == 0.0  # it did not sleep


# -- pieces ----------------------------------------------------------------------------------------


def test_usage_adds_up() -> None:
    parts = [Usage(1, 2, 3, 1), Usage(10, 20, 30, 1)]
    assert sum(parts) == Usage(11, 22, 33, 2)
    assert sum(parts, Usage()) == Usage(11, 22, 33, 2)
    assert Usage() + parts[0] == parts[0]


@pytest.mark.parametrize(
    "text",
    [
        '{"x": 1}',
        '  {"x": 1}\n',
        'Here is the JSON:\n```json\n{"x": 1}\n```\nHope it helps!',
        '```\n{"x": 1}\n```',
        'Sure. {"x": 1} That is all.',
        '<think>Maybe {"x": 2}? No.</think>\n{"x": 1}',
        'The set {a, b} gives {"x": 1}',
    ],
)
def test_extract_json_tolerates_fences_prose_and_thinking(text: str) -> None:
    assert extract_json(text) == {"x": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("no json here", "contains no JSON object"), ("{'x': 1}", "not valid JSON")],
)
def test_extract_json_explains_failures(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        extract_json(text)


class Leaf(BaseModel):
    kind: Literal["leaf"] = "leaf"
    name: Annotated[str, Field(min_length=1, description="a name")]


class Branch(BaseModel):
    kind: Literal["branch"] = "branch"
    weight: float | None = None


class Tree(BaseModel):
    title: str
    parts: list[Annotated[Leaf | Branch, Field(discriminator="kind")]]
    main: Leaf = Field(description="the main leaf")
    extra: Branch | None = None


def test_strict_schema_closes_objects_and_inlines_refs_with_siblings() -> None:
    schema, strict = strict_json_schema(Tree)
    assert strict
    text = json.dumps(schema)
    assert "oneOf" not in text and "minLength" not in text and "discriminator" not in text
    # Plain $refs stay (their $defs are made strict); a $ref with a description is inlined.
    assert schema["properties"]["parts"]["items"]["anyOf"] == [
        {"$ref": "#/$defs/Leaf"},
        {"$ref": "#/$defs/Branch"},
    ]
    for d in schema["$defs"].values():
        assert d["additionalProperties"] is False and d["required"] == list(d["properties"])
    assert schema["required"] == ["title", "parts", "main", "extra"]
    assert schema["additionalProperties"] is False
    main = schema["properties"]["main"]
    assert main["description"] == "the main leaf" and main["additionalProperties"] is False
    assert main["required"] == ["kind", "name"]
    assert schema["properties"]["extra"]["anyOf"] == [{"$ref": "#/$defs/Branch"}, {"type": "null"}]
    # The strict schema still accepts what the model accepts.
    Tree.model_validate({"title": "t", "parts": [{"kind": "leaf", "name": "a"}], "main": {"name": "m"}})


def test_models_that_cannot_be_strict() -> None:
    class Free(BaseModel):
        data: dict[str, Any]

    class Pair(BaseModel):
        xy: tuple[int, int]

    class Holder(BaseModel):
        free: Free | None = None

    for model in (Free, Pair, Holder):
        schema, strict = strict_json_schema(model)
        assert not strict
        assert schema == model.model_json_schema()


class Node(BaseModel):
    name: str
    children: list[Node] = []


def test_a_recursive_model_can_be_strict() -> None:
    schema, strict = strict_json_schema(Node)
    assert strict
    assert schema["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert schema["$defs"]["Node"]["required"] == ["name", "children"]


def test_formalization_failed_carries_its_evidence() -> None:
    from solvers.errors import Issue

    issue = Issue(code="unknown", message="unknown symbol 'z'", where="constraint c1", fix="declare z")
    e = FormalizationFailed(attempts=4, usage=Usage(1, 2, 3, 4), last_raw="{}", issues=[issue])
    assert e.attempts == 4 and e.usage.calls == 4 and e.last_raw == "{}" and e.issues == [issue]
    assert "unknown symbol 'z'" in str(e) and "declare z" in str(e)
    assert isinstance(e, AppError) and not isinstance(e, LLMError)
