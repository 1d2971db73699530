"""The browser-test stack works: Chromium reaches the live service, the service reaches the stub LLM.

Scenarios for the web form go in their own modules; these only prove the ground they stand on.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page
from shared_models import WORKSHOP_TEXT, llm_json, workshop_model

from .conftest import LiveServer, PageErrors, Screenshot, StubLLM


def test_chromium_reads_the_live_service(live_server: LiveServer, page: Page, screenshot: Screenshot) -> None:
    response = page.goto(live_server.url + "/healthz")
    assert response is not None and response.status == 200
    assert json.loads(page.locator("pre").first.inner_text()) == {"status": "ok"}
    assert screenshot(page, "healthz").stat().st_size > 0
    page.goto(live_server.url + "/openapi.json")
    document = json.loads(page.locator("pre").first.inner_text())
    assert document["info"]["title"] == "optscribe"
    assert "/v1/formalize" in document["paths"]


def test_the_api_docs_work_offline(live_server: LiveServer, page: Page, screenshot: Screenshot) -> None:
    """/docs is Swagger UI from the app's own static files: this browser reaches no CDN, and a
    script or style it could not load would fail the test (the page_errors fixture)."""
    page.goto(live_server.url + "/docs")
    page.locator(".swagger-ui .info .title").filter(has_text="optscribe").wait_for()
    page.locator(".opblock-summary-path", has_text="/v1/solve").first.wait_for()
    assert page.locator(".opblock").count() >= 15
    screenshot(page, "docs")


def test_formalize_answers_with_the_stub_llm(live_server: LiveServer, stub_llm: StubLLM) -> None:
    stub_llm.answer_with(llm_json(workshop_model()), prompt_tokens=120, completion_tokens=80)
    with live_server.client() as http:
        r = http.post("/v1/formalize", json={"text": WORKSHOP_TEXT})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "solved"
    assert out["result"]["objective"] == pytest.approx(1350)
    assert out["usage"]["prompt_tokens"] == 120
    assert stub_llm.count == 1 and stub_llm.left == 0
    sent = stub_llm.requests[0]
    assert WORKSHOP_TEXT in sent.text
    assert sent.body["model"] == "stub" and sent.response_format == "json_schema"


def test_without_an_llm_formalize_is_503(live_server_no_llm: LiveServer) -> None:
    with live_server_no_llm.client() as http:
        r = http.post("/v1/formalize", json={"text": WORKSHOP_TEXT})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "llm_not_configured"


def test_page_errors_tell_bugs_from_refusals(
    live_server: LiveServer, page: Page, page_errors: PageErrors
) -> None:
    page.goto(live_server.url + "/healthz")
    # an HTTP refusal the page asked for: logged by Chromium, no failure
    assert page.evaluate("fetch('/v1/solve', {method: 'POST', body: '{}'}).then(r => r.status)") == 422
    # a missing script, a console.error and an uncaught exception: failures
    page.evaluate("""new Promise(done => {
        const s = document.createElement('script'); s.src = '/nowhere/missing.js'; s.onerror = done;
        document.head.append(s);
        console.error('logged'); setTimeout(() => { throw new Error('boom') });
    })""")
    page_errors.wait_for(page, "boom")
    page_errors.wait_for(page, "status of 422")
    assert "status of 422" not in " ".join(page_errors.failures)
    kinds = sorted(f.split(" ")[0] for f in page_errors.failures)
    assert kinds == ["console.error", "script", "uncaught"], page_errors.failures
    page_errors.clear()  # provoked on purpose; any other error would fail the test


def test_a_phone_page_is_a_mobile_viewport(phone_page: Page) -> None:
    phone_page.set_content('<meta name="viewport" content="width=device-width">')
    assert phone_page.evaluate("[innerWidth, navigator.maxTouchPoints > 0]") == [390, True]
