"""The web form in a real headless Chromium, against the real service and a stub LLM.

A planner pastes a model and gets a plan; an infeasible model shows its conflicting sentences
and one "apply and re-solve" makes it feasible; a problem in words goes through the pipeline
(the stub LLM) and its model is shown beside the sentences it came from; a clarifying question
is answered in a form and the job resumes; a ``<script>`` in the problem text stays text; the
page fits a phone's width; keyboard focus on a constraint highlights its sentence; without an
LLM the page says so and still solves a pasted model. What a new user's walkthrough found: an
error of a form in the result appears in that form (in view, focused), and a result a refused
model leaves on screen says it is the old one; one problem is said once; nothing is cut off on a
phone; scrolling maths is named; the page asks for no missing icon. Each scenario saves
screenshots under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect
from shared_models import WORKSHOP_TEXT, llm_json, workshop_model

from .conftest import LiveServer, PageErrors, Screenshot, StubLLM

EXAMPLES = Path(__file__).resolve().parents[2] / "app" / "web" / "examples"
JOB_TIMEOUT_MS = 30_000


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def paste_and_solve(page: Page, model: dict[str, Any]) -> None:
    page.get_by_label("A model in the optscribe.model/v1 contract (JSON)").fill(json.dumps(model, indent=2))
    page.locator("#model-form").get_by_role("button", name="Solve this model").click()


def solve_example(page: Page, button: str, name: str) -> Any:
    """Load the built-in example behind ``button`` (its model is named ``name``), solve its
    model, and answer the result."""
    page.get_by_role("button", name=button).click()
    expect(page.locator("#model-json")).to_have_value(re.compile(name))
    page.locator("#model-form").get_by_role("button", name="Solve this model").click()
    return result(page)


def result(page: Page) -> Any:
    """The job's result fragment, once it has arrived."""
    article = page.locator("#result article.job")
    expect(article).to_be_visible(timeout=JOB_TIMEOUT_MS)
    return article


def test_paste_a_model_solve_see_the_plan(
    live_server: LiveServer, page: Page, screenshot: Screenshot
) -> None:
    page.goto(live_server.url + "/")
    expect(page.get_by_role("heading", name="optscribe")).to_be_visible()
    paste_and_solve(page, example("1_bakery")["model"])
    expect(page.locator("#run .stages li").first).to_be_visible(timeout=JOB_TIMEOUT_MS)
    job = result(page)
    expect(job.get_by_role("heading", level=2)).to_contain_text("A plan (optimal)")
    stages = page.locator("#run .stages li").all_inner_texts()
    assert stages.count("Finished") == 1 and "Done" not in stages, stages  # one end line, not two
    expect(job.locator("[data-objective]")).to_have_text("342")
    table = job.locator("table.plan-table")
    expect(table.locator("tr", has_text="bake[bread]")).to_contain_text("42")
    expect(table.locator("tr", has_text="bake[cake]")).to_contain_text("items baked each morning")
    # the model as mathematics: KaTeX has rendered every part, and the chart is drawn
    expect(job.locator(".constraints .katex").first).to_be_visible()
    assert job.locator("[data-tex]:not([data-rendered])").count() == 0
    expect(job.locator("canvas[data-drawn]")).to_have_count(1)
    screenshot(page, "plan")


def test_an_infeasible_model_shows_its_conflict_and_a_suggestion_fixes_it(
    live_server: LiveServer, page: Page, screenshot: Screenshot
) -> None:
    page.goto(live_server.url + "/")
    job = solve_example(page, "Call centre shifts (infeasible)", "call_centre")
    expect(job.get_by_role("heading", level=2)).to_contain_text("infeasible")
    # the conflicting sentences are flagged where they stand, and in the model
    conflict_marks = job.locator(".problem-text mark.conflict")
    expect(conflict_marks.filter(has_text="Only 14 agents can work on any one day.")).to_have_count(1)
    expect(job.locator("li.constraint.conflict[data-ref=team_size]")).to_be_visible()
    suggestion = job.locator(".relaxations li").first
    expect(suggestion).to_contain_text("team_size")
    expect(suggestion).to_contain_text("16")
    screenshot(page, "conflict")
    suggestion.get_by_role("button", name="Apply and re-solve").click()
    expect(page.locator("#run h2")).to_have_text("Solving with the suggestion applied")
    fixed = result(page)
    expect(fixed.get_by_role("heading", level=2)).to_contain_text("A plan (optimal)", timeout=JOB_TIMEOUT_MS)
    expect(fixed.locator("[data-objective]")).to_have_text("1880")
    # the applied suggestion is in the model, said where it was made
    editor = fixed.locator("#edit-json-" + fixed_job_id(page))
    # (the limit is one parameter read nowhere else: its value is what changes, 14 -> 16)
    expect(editor).to_have_value(re.compile(r'"team": \{[^}]*"value": 16'))
    expect(fixed.locator("li.constraint[data-ref=team_size]")).to_contain_text("Suggested fix applied")
    # the top box keeps what the person pasted; the result's own button says it solves its model
    expect(fixed.get_by_role("button", name="Solve the edited model")).to_be_visible()
    expect(page.get_by_role("button", name="Solve this model")).to_have_count(1)
    expect(page.locator("#model-form").get_by_role("button", name="Solve this model")).to_be_visible()
    screenshot(page, "fixed")


def fixed_job_id(page: Page) -> str:
    return str(page.locator("#result article.job").get_attribute("data-job-done"))


def test_a_problem_in_words_is_formalized_and_shown_beside_its_sentences(
    live_server: LiveServer, stub_llm: StubLLM, page: Page, screenshot: Screenshot
) -> None:
    stub_llm.answer_with(llm_json(workshop_model()))
    page.goto(live_server.url + "/")
    page.get_by_label("The problem, in plain language").fill(WORKSHOP_TEXT)
    page.get_by_role("button", name="Formalize and solve").click()
    expect(page.locator("#run h2")).to_have_text("Formalizing and solving")
    job = result(page)
    expect(job.locator("[data-objective]")).to_have_text("1350")
    assert stub_llm.count == 1 and WORKSHOP_TEXT in stub_llm.requests[0].text
    sentence = job.locator(".problem-text mark[data-refs~=capacity]")
    expect(sentence).to_have_text("The shop has 100 units of wood and 90 hours of labor.")
    row = job.locator("li.constraint[data-ref=capacity]")
    expect(row.locator(".katex")).to_have_count(2)  # the constraint, and its "for each"
    expect(row.locator("q.source")).to_have_text("The shop has 100 units of wood and 90 hours of labor.")
    row.hover()
    expect(sentence).to_have_class(re.compile(r"\bhl\b"))
    screenshot(page, "formalized")


def test_clarifying_questions_are_a_form_that_resumes_the_job(
    live_server: LiveServer, stub_llm: StubLLM, page: Page, screenshot: Screenshot
) -> None:
    question = "How many hours of labor does the shop have?"
    ask = json.loads(llm_json(workshop_model()))
    ask |= {"variables": [], "constraints": [], "questions": [question]}
    stub_llm.answer_with(ask, llm_json(workshop_model()))
    page.goto(live_server.url + "/")
    page.get_by_label("The problem, in plain language").fill(WORKSHOP_TEXT)
    page.get_by_role("button", name="Formalize and solve").click()
    answer = page.get_by_label(question)
    expect(answer).to_be_visible(timeout=JOB_TIMEOUT_MS)
    page.get_by_role("button", name="Send the answers and continue").click()  # nothing answered
    refused = page.locator("#result .questions .form-error .error[role=alert]")
    expect(refused).to_contain_text("Nothing to send")
    expect(refused).not_to_contain_text("Nothing was solved")  # there is no result to speak of
    assert is_focused(page, ".questions .form-error .error")
    answer.fill("90 hours")
    screenshot(page, "question")
    page.get_by_role("button", name="Send the answers and continue").click()
    job = result(page)
    expect(job.locator("[data-objective]")).to_have_text("1350")
    assert stub_llm.count == 2
    assert "90 hours" in stub_llm.requests[1].text


def test_a_script_in_the_problem_text_is_shown_as_text(
    live_server: LiveServer, stub_llm: StubLLM, page: Page, screenshot: Screenshot
) -> None:
    evil = "<script>window.__pwned = 1</script>"
    image = '<img src=x onerror="window.__pwned = 2">'
    text = f'{WORKSHOP_TEXT}\nNote: {evil} and "quotes" & {image}'
    model = workshop_model()
    model["constraints"][1]["source"] = f"At least 5 tables must be made. {evil}"
    model["constraints"][1]["description"] = image
    stub_llm.answer_with(llm_json(model))
    page.goto(live_server.url + "/")
    page.get_by_label("The problem, in plain language").fill(text)
    page.get_by_role("button", name="Formalize and solve").click()
    job = result(page)
    shown = job.locator(".problem-text")
    expect(shown).to_contain_text(evil)
    expect(shown).to_contain_text(image)
    expect(job.locator("li.constraint[data-ref=tables_min] q.source")).to_contain_text(evil)
    assert page.evaluate("window.__pwned") is None
    assert job.locator("script, img").count() == 0
    screenshot(page, "escaped")


def test_the_page_fits_a_phone(live_server: LiveServer, phone_page: Page, screenshot: Screenshot) -> None:
    page = phone_page
    page.goto(live_server.url + "/")
    screenshot(page, "start")
    job = solve_example(page, "Banquet kitchen schedule", "banquet_kitchen")
    expect(job.locator("[data-objective]")).to_have_text("150")
    expect(job.locator("canvas[data-drawn]")).to_have_count(1)
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth, window.innerWidth]"
    )
    assert widths[0] <= widths[1] <= 390, widths
    screenshot(page, "schedule")


def test_keyboard_focus_on_a_constraint_highlights_its_sentence(
    live_server: LiveServer, page: Page, screenshot: Screenshot
) -> None:
    page.goto(live_server.url + "/")
    job = solve_example(page, "Bakery: bread or cakes", "bakery")
    sentence = job.locator(".problem-text mark[data-refs~=resources]")
    expect(sentence).not_to_have_class(re.compile(r"\bhl\b"))
    for _ in range(60):  # Tab through the page until a constraint row has the focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.ref") == "resources":
            break
    else:
        raise AssertionError("Tab never reached the constraint 'resources'")
    expect(sentence).to_have_class(re.compile(r"\bhl\b"))
    screenshot(page, "focused")
    page.keyboard.press("Shift+Tab")  # back to the objective: its sentence now, not this one
    expect(job.locator(".problem-text mark[data-refs~=objective]")).to_have_class(re.compile(r"\bhl\b"))
    expect(sentence).not_to_have_class(re.compile(r"\bhl\b"))


def test_without_an_llm_the_page_says_so_and_still_solves_a_pasted_model(
    live_server_no_llm: LiveServer, page: Page, screenshot: Screenshot
) -> None:
    page.goto(live_server_no_llm.url + "/")
    notice = page.locator("#llm-notice")
    expect(notice).to_contain_text("No LLM is configured")
    notice.get_by_text("How to configure one").click()
    expect(notice).to_contain_text("OPTSCRIBE_LLM_MODEL")
    expect(page.get_by_role("button", name="Formalize and solve")).to_be_disabled()
    paste_and_solve(page, example("4_deliveries")["model"])
    job = result(page)
    expect(job.locator("[data-objective]")).to_have_text("350")
    expect(job.locator("table.plan-table tr", has_text="ship[north,A]")).to_contain_text("30")
    screenshot(page, "no-llm")


def expect_refused(page: Page, page_errors: PageErrors, status: int) -> None:
    """The refusal the test provoked reached the browser as an HTTP error answer, and nothing
    else went wrong on the page."""
    page_errors.wait_for(page, f"status of {status}")
    assert not page_errors.failures, page_errors.failures


def test_edit_a_constraint_export_the_model_and_see_a_bad_model_refused(
    live_server: LiveServer, page: Page, page_errors: PageErrors, screenshot: Screenshot
) -> None:
    page.goto(live_server.url + "/")
    paste_and_solve(page, example("1_bakery")["model"])
    job = result(page)
    expect(job.locator("[data-objective]")).to_have_text("342")
    with page.expect_download() as download:
        job.get_by_role("button", name="LP", exact=True).click()
    assert download.value.suggested_filename == "bakery.lp"
    lp = Path(download.value.path()).read_text()
    assert "bake" in lp and "resources" in lp
    orders = job.locator("li.constraint[data-ref=orders]")
    orders.get_by_text("Edit orders").click()
    orders.get_by_label("expression").fill("bake['bread'] >= 60")
    orders.get_by_role("button", name="Re-solve with this change").click()
    expect(page.locator("#run h2")).to_have_text("Solving with orders changed")
    changed = result(page)
    expect(changed.locator("table.plan-table tr", has_text="bake[bread]")).to_contain_text("60")
    expect(changed.locator("li.constraint[data-ref=orders] q.source")).to_contain_text("at least 40 loaves")
    # a model that is not JSON is refused where it was typed, with line and column
    page.get_by_label("A model in the optscribe.model/v1 contract (JSON)").fill(
        '{"schema": "optscribe.model/v1",'
    )
    page.locator("#model-form").get_by_role("button", name="Solve this model").click()
    alert = page.locator("#run .error[role=alert]")
    expect(alert).to_contain_text("malformed JSON")
    expect(alert).to_contain_text("line 1, column")
    screenshot(page, "refused")


def test_with_api_keys_the_page_asks_for_one_and_sends_it(
    make_live_server: Any, page: Page, page_errors: PageErrors, screenshot: Screenshot
) -> None:
    import hashlib

    key = "web-form-key-" + "k" * 20
    server = make_live_server(
        OPTSCRIBE_API_KEYS_REQUIRED="true",
        OPTSCRIBE_API_KEY_HASHES=hashlib.sha256(key.encode()).hexdigest(),
    )
    page.goto(server.url + "/")
    paste_and_solve(page, example("1_bakery")["model"])
    expect(page.locator("#toast")).to_contain_text("API key")  # refused without it, said plainly
    expect_refused(page, page_errors, 401)
    page.get_by_label("This server requires an API key").fill(key)
    page.locator("#model-form").get_by_role("button", name="Solve this model").click()
    job = result(page)  # streamed over /v1/jobs/{id}/events with the key as a header
    expect(job.locator("[data-objective]")).to_have_text("342")
    screenshot(page, "with-key")


def test_a_running_job_can_be_cancelled(
    make_live_server: Any, stub_llm: StubLLM, page: Page, screenshot: Screenshot
) -> None:
    # A worker learns of a cancel at its next heartbeat (a third of the lease): a short lease
    # lets the test wait for it before the held LLM answers.
    server = make_live_server(OPTSCRIBE_JOB_LEASE_SECONDS="0.6")
    stub_llm.hold()  # the formalization waits on the LLM until released
    page.goto(server.url + "/")
    page.get_by_label("The problem, in plain language").fill(WORKSHOP_TEXT)
    page.get_by_role("button", name="Formalize and solve").click()
    stub_llm.wait_for_requests(1)
    expect(page.locator("#run .stages")).to_contain_text("Writing the model from the text (LLM)")
    page.locator("#run").get_by_role("button", name="Cancel").click()
    with server.client() as http:
        job_id = str(page.locator("#run [data-job-id]").get_attribute("data-job-id"))
        for _ in range(100):
            if http.get(f"/v1/jobs/{job_id}").json()["cancel_requested"]:
                break
            page.wait_for_timeout(50)
    page.wait_for_timeout(600)  # a heartbeat or two
    stub_llm.release()
    job = result(page)
    expect(job.get_by_role("heading", level=2)).to_have_text("Cancelled")
    expect(page.locator("#run [data-status]")).to_have_text("Cancelled")
    screenshot(page, "cancelled")


# ------------------------------------------------------------------ a new user's walkthrough


def is_focused(page: Page, selector: str) -> bool:
    return bool(page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector))


def test_errors_of_the_result_forms_appear_where_the_person_acted(
    live_server: LiveServer, page: Page, screenshot: Screenshot
) -> None:
    page.goto(live_server.url + "/")
    paste_and_solve(page, example("1_bakery")["model"])
    job = result(page)
    expect(job.locator("[data-objective]")).to_have_text("342")
    # a JSON typo in the result's editor: the error is under that editor, in view and focused
    editor = job.locator("section.editor")
    editor.locator("textarea").fill('{"schema": "optscribe.model/v1",')
    editor.get_by_role("button", name="Solve the edited model").click()
    alert = editor.locator(".form-error .error[role=alert]")
    expect(alert).to_contain_text("The model is not valid JSON")
    expect(alert).to_contain_text("line 1, column")
    expect(alert).to_contain_text("the result on this page is still that of the model before this change")
    expect(alert).to_be_in_viewport()
    assert is_focused(page, ".editor .form-error .error")
    expect(page.locator("#run .error")).to_have_count(0)  # not in #run, far above
    screenshot(page, "editor-error")
    # a constraint edit naming something the model lacks: the error is in that constraint's form
    orders = job.locator("li.constraint[data-ref=orders]")
    orders.get_by_text("Edit orders").click()
    orders.get_by_label("expression").fill("bake['bread'] >= minimum_loaves")
    orders.get_by_role("button", name="Re-solve with this change").click()
    edit_alert = orders.locator(".form-error .error[role=alert]")
    expect(edit_alert).to_contain_text("The model has 1 problem")
    expect(edit_alert).to_contain_text("minimum_loaves")
    expect(edit_alert).to_be_in_viewport()
    assert is_focused(page, "li.constraint[data-ref=orders] .form-error .error")
    expect(page.locator("#run .error")).to_have_count(0)
    expect(job.get_by_role("heading", level=2)).to_contain_text("A plan (optimal)")  # the solved model's
    screenshot(page, "edit-error")
    # a typo in the top box: the error is under it, and the result below says it is the old one
    page.locator("#model-json").fill("{")
    page.locator("#model-form").get_by_role("button", name="Solve this model").click()
    top_alert = page.locator("#run .error[role=alert]")
    expect(top_alert).to_contain_text("The model is not valid JSON")
    expect(top_alert).to_be_in_viewport()
    assert is_focused(page, "#run .error")
    expect(job).to_have_class(re.compile(r"\bstale\b"))
    expect(job.locator(".stale-note")).to_contain_text("is of the model solved before")
    screenshot(page, "stale")
    # a good model again: a new job, and the stale result is gone
    paste_and_solve(page, example("1_bakery")["model"])
    expect(page.locator("#result .stale-note")).to_have_count(0, timeout=JOB_TIMEOUT_MS)
    expect(result(page).locator("[data-objective]")).to_have_text("342")


def test_a_pasted_model_with_an_unknown_field_has_one_problem_said_once(
    live_server: LiveServer, page: Page, screenshot: Screenshot
) -> None:
    page.goto(live_server.url + "/")
    page.locator("#model-json").fill('{"foo": 1}')
    page.locator("#model-form").get_by_role("button", name="Solve this model").click()
    alert = page.locator("#run .error[role=alert]")
    expect(alert.get_by_role("heading")).to_have_text("The model has 1 problem")
    expect(alert.locator(".issues li")).to_have_count(1)
    assert alert.inner_text().count("unknown field") == 1
    page.locator("#model-json").fill("")
    page.locator("#model-form").get_by_role("button", name="Solve this model").click()
    expect(alert.get_by_role("heading")).to_have_text("There is no model to solve")
    expect(alert).not_to_contain_text("not valid JSON")
    screenshot(page, "empty")


def test_a_page_load_asks_for_nothing_that_is_missing(
    live_server: LiveServer, page: Page, page_errors: PageErrors
) -> None:
    page.goto(live_server.url + "/")
    page.wait_for_load_state("networkidle")
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert icon == "/static/favicon.svg"
    assert page.request.get(live_server.url + icon).ok
    assert page.request.get(live_server.url + "/favicon.ico").ok
    assert not [m for m in page_errors.messages if "status of 404" in m], page_errors.messages


def test_the_furniture_plan_has_no_empty_unit_column_and_a_labelled_axis(
    live_server: LiveServer, page: Page, screenshot: Screenshot
) -> None:
    furniture = json.loads((Path(__file__).resolve().parents[2] / "examples" / "furniture.json").read_text())
    page.goto(live_server.url + "/")
    paste_and_solve(page, furniture)
    job = result(page)
    table = job.locator("table.plan-table")
    expect(table.locator("tbody tr").first).to_be_visible()
    expect(table.locator("thead th")).to_have_text(["Decision", "Value", "What it is"])
    expect(job.locator("figure.chart figcaption")).to_have_text("Decisions: units produced")
    expect(job.locator("canvas[data-drawn]")).to_have_count(1)
    screenshot(page, "furniture")


def right_overflows(page: Page, selector: str, within: str) -> list[str]:
    """The elements matching ``selector`` whose right edge passes that of their closest
    ``within`` ancestor (what would be cut off)."""
    found: list[str] = page.evaluate(
        """([selector, within]) => [...document.querySelectorAll(selector)].filter((el) => {
               const box = el.closest(within);
               return box && el.getBoundingClientRect().right > box.getBoundingClientRect().right + 1;
           }).map((el) => el.textContent.slice(0, 60))""",
        [selector, within],
    )
    return found


def test_on_a_phone_nothing_is_cut_off_and_a_tap_shows_the_sentence(
    live_server: LiveServer, phone_page: Page, screenshot: Screenshot
) -> None:
    page = phone_page
    page.goto(live_server.url + "/")
    last_example = page.locator(".examples button").last.bounding_box()
    first_card = page.locator("#text-form").bounding_box()
    assert last_example and first_card
    assert first_card["y"] - (last_example["y"] + last_example["height"]) >= 8  # a gap, not touching
    job = solve_example(page, "Banquet kitchen schedule", "banquet_kitchen")
    expect(job.locator("[data-objective]")).to_have_text("150")
    # the plan: every column in its box (the description goes under the decision's name)
    scroll = job.locator(".table-scroll")
    assert scroll.evaluate("(el) => el.scrollWidth <= el.clientWidth"), "the plan table is cut off"
    expect(job.locator("tr", has_text="prep[soup]").locator(".what-inline")).to_be_visible()
    # the maths of the interval variables wraps inside the model's box
    assert job.locator(".math-list .katex").count() > 0
    assert right_overflows(page, "#result .math-list .katex-html", "section.model") == []
    assert right_overflows(page, "#result .math-list li", "section.model") == []
    hint = job.locator(".sentences .hint")
    expect(hint).to_contain_text("tap")
    oven = job.locator("li.constraint[data-ref=oven]")
    oven.locator(".c-head").tap()
    expect(job.locator(".problem-text mark[data-refs~=oven]")).to_have_class(re.compile(r"\bhl\b"))
    screenshot(page, "kitchen")


def test_maths_that_scrolls_sideways_is_named_for_the_keyboard(
    live_server: LiveServer, phone_page: Page, screenshot: Screenshot
) -> None:
    page = phone_page
    page.set_viewport_size({"width": 320, "height": 700})  # narrow: some formulas scroll
    page.goto(live_server.url + "/")
    job = solve_example(page, "Call centre shifts (infeasible)", "call_centre")
    expect(job.get_by_role("heading", level=2)).to_contain_text("infeasible")
    unnamed = page.evaluate(
        """[...document.querySelectorAll('#result .tex')].filter((el) => {
               const scrolls = ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
               return scrolls && !(el.getAttribute('role') === 'math' && el.getAttribute('aria-label'));
           }).map((el) => el.outerHTML.slice(0, 120))"""
    )
    assert unnamed == [], unnamed
    # Tab through the result: every stop that is maths has its words as a name (at this width
    # Chrome makes the objective and a constraint such stops: they overflow their box)
    job.get_by_role("heading", level=2).focus()
    for _ in range(80):
        page.keyboard.press("Tab")
        stop = page.evaluate(
            """() => { const el = document.activeElement;
                       if (!el.classList.contains('tex')) return null;
                       return [el.getAttribute('role'), el.getAttribute('aria-label')]; }"""
        )
        assert stop is None or (stop[0] == "math" and stop[1]), stop
    screenshot(page, "narrow")


def test_the_llm_settings_scroll_sideways_instead_of_breaking_a_url(
    live_server_no_llm: LiveServer, phone_page: Page, screenshot: Screenshot
) -> None:
    page = phone_page
    page.goto(live_server_no_llm.url + "/")
    notice = page.locator("#llm-notice")
    expect(notice).to_contain_text("docs/llm.md in the optscribe repository")
    notice.get_by_text("How to configure one").click()
    pre = notice.locator("pre")
    expect(pre).to_be_visible()
    expect(pre).to_have_attribute("aria-label", re.compile(r"\w"))
    assert pre.evaluate("(el) => getComputedStyle(el).whiteSpace") == "pre"
    assert pre.evaluate("(el) => el.scrollWidth > el.clientWidth")  # it scrolls, inside its box
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    url = "OPTSCRIBE_LLM_BASE_URL=http://localhost:11434/v1"
    lines = pre.evaluate(
        """(el, url) => { const node = el.firstChild; const at = node.textContent.indexOf(url);
               const range = document.createRange();
               range.setStart(node, at);
               range.setEnd(node, at + url.length);
               return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size; }""",
        url,
    )
    assert lines == 1, f"{url} is broken over {lines} lines"
    screenshot(page, "llm-settings")
