"""A backend is one registered factory: Settings accepts its name, Assistant builds it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from rag import Assistant, Settings, backends
from rag.types import Source


class Echo:
    """The smallest backend: quotes the first source's first sentence, cited."""

    name = "echo"

    def generate(self, question: str, sources: list[Source]) -> str:
        return f"{sources[0].text.split('. ')[0]} [1]." if sources else ""

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        yield self.generate(question, sources)


def test_a_registered_name_is_a_valid_setting_and_builds_the_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(backends._REGISTRY, "echo", lambda settings: Echo())
    settings = Settings(_env_file=None, llm="echo")
    assert settings.resolved_llm == "echo" and "echo" in backends.names()
    assert isinstance(Assistant(settings).llm, Echo)


def test_an_unregistered_name_is_refused_with_the_registered_ones() -> None:
    with pytest.raises(ValidationError, match=r"'auto' or one of: .*'extractive'"):
        Settings(_env_file=None, llm="nope")
