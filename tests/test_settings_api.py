"""The public surface and the settings file do not drift."""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import rag
from rag import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_public_api_is_exactly_all() -> None:
    public = {name for name in dir(rag) if not name.startswith("_")}
    # Submodules show up in dir(rag) once anything imports them; they are not exports.
    modules = {m.name for m in pkgutil.iter_modules(rag.__path__)}
    assert public - modules == set(rag.__all__)
    for name in rag.__all__:
        assert getattr(rag, name) is not None


def test_env_example_mirrors_settings() -> None:
    text = (ROOT / ".env.example").read_text()
    keys = dict(re.findall(r"^([A-Z_]+)=(.*)$", text, flags=re.M))
    expected = {
        ("OPENAI_API_KEY" if n == "openai_api_key" else f"RAG_{n.upper()}"): f
        for n, f in Settings.model_fields.items()
    }
    assert set(keys) == set(expected)
    for key, field in expected.items():
        default = "" if field.default is None else str(field.default)
        assert keys[key] == default, key


def test_settings_from_env_and_auto_backend(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAG_LLM", raising=False)  # conftest pins it; auto is tested here
    monkeypatch.setattr("rag.backends.model_file.installed", lambda own_file=False: False)
    assert Settings().resolved_llm == "extractive"
    monkeypatch.setenv("RAG_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("RAG_TOP_K", "7")
    settings = Settings()
    assert settings.resolved_llm == "openai" and settings.top_k == 7
    monkeypatch.delenv("RAG_LLM_BASE_URL")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    settings = Settings()
    assert settings.resolved_llm == "openai"
    assert "sk-test-secret" not in repr(settings) and "sk-test-secret" not in str(
        settings.model_dump()
    )


def test_with_overrides_validates() -> None:
    settings = Settings(_env_file=None).with_overrides(top_k="9", llm="extractive")
    assert settings.top_k == 9
    try:
        Settings(_env_file=None).with_overrides(top_k="many")
    except Exception as exc:
        assert "top_k" in str(exc)
    else:
        raise AssertionError("invalid override accepted")
