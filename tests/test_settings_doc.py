"""``optscribe settings``: the reference page is current, every setting says what it does,
and the command shows the values in force with secrets hidden."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.cli_settings import markdown, rows
from app.settings import clear_settings_cache

ROOT = Path(__file__).resolve().parents[1]


def test_docs_settings_md_is_the_generated_page() -> None:
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert page == markdown(), "regenerate it: optscribe settings --markdown > docs/settings.md"


def test_every_setting_says_what_it_does() -> None:
    table = rows()
    assert len(table) > 40
    assert [r.field for r in table if not r.description.strip()] == []
    envs = [e for r in table for e in r.env]
    assert len(envs) == len(set(envs))
    assert all(e.startswith(("OPTSCRIBE_", "OPENAI_")) for e in envs)


def test_the_command_shows_values_in_force_and_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTSCRIBE_WORKERS", "5")
    monkeypatch.setenv("OPTSCRIBE_LLM_API_KEY", "sk-very-secret-value")
    clear_settings_cache()
    try:
        out = CliRunner().invoke(app, ["settings"])
    finally:
        clear_settings_cache()
    assert out.exit_code == 0, out.output
    assert "sk-very-secret-value" not in out.output
    workers = next(line for line in out.output.splitlines() if line.startswith("OPTSCRIBE_WORKERS "))
    assert workers.split()[1:] == ["5", "(changed)"]
    key = next(line for line in out.output.splitlines() if line.startswith("OPTSCRIBE_LLM_API_KEY "))
    assert "(set, hidden)" in key
