"""The openai backend against a real OpenAI-compatible HTTP server on 127.0.0.1 (test-owned)."""

from __future__ import annotations

import re

import pytest
from conftest import LRA_TITLE, answer_reply

from rag import CANNOT_ANSWER, Answer, Assistant, Settings
from rag.errors import ConfigError

pytestmark = pytest.mark.e2e

Q = "What range of sequence lengths does the Long Range Arena benchmark cover?"


def _assistant(real_assistant: Assistant, base_url: str, **extra: object) -> Assistant:
    settings = real_assistant.settings.with_overrides(
        llm="openai", llm_base_url=base_url, llm_max_retries=0, **extra
    )
    return Assistant(settings, embedder=real_assistant.embedder, store=real_assistant.store)


def test_cited_answer_and_invented_citation_removed(real_assistant: Assistant, fake_llm) -> None:
    fake_llm.reply = lambda messages: (
        "Long Range Arena covers sequences from 1K to 16K tokens [1]. "
        "It was designed by a team of 40 astronauts on the Moon [1]. "
        "It also evaluates image tasks [9]."
    )
    assistant = _assistant(real_assistant, fake_llm.base_url)
    answer = assistant.ask(Q)
    assert answer.backend == "openai:gpt-4o-mini"
    assert answer.sources[0].title == LRA_TITLE
    assert "1K to 16K tokens [1]" in answer.text
    assert "astronauts" not in answer.text  # unsupported sentence dropped
    assert "[9]" not in answer.text  # invented citation removed
    # The prompt carried focused excerpts, numbered as the sources, and did not offer the
    # refusal as a reply (abstaining is rag's decision, not the model's).
    prompt = fake_llm.last_prompt()
    assert "[1] Long Range Arena: A Benchmark for Efficient Transformers\n" in prompt
    assert "1K to 16K tokens" in prompt
    assert CANNOT_ANSWER not in prompt


def test_flag_policy_keeps_unsupported_sentences_visibly(
    real_assistant: Assistant, fake_llm
) -> None:
    fake_llm.reply = lambda m: (
        "Long Range Arena covers sequences ranging from 1K to 16K tokens [1]. It runs on 12 quantum computers [1]."
    )
    answer = _assistant(real_assistant, fake_llm.base_url, unsupported="flag").ask(Q)
    flagged = [s for s in answer.sentences if not s.supported]
    assert len(flagged) == 1 and "quantum" in flagged[0].text
    assert any(s.supported for s in answer.sentences)


def test_model_refusal_is_recognised(real_assistant: Assistant, fake_llm) -> None:
    fake_llm.reply = lambda m: CANNOT_ANSWER
    answer = _assistant(real_assistant, fake_llm.base_url, unverified_answer="refuse").ask(Q)
    assert answer.abstained and answer.text == CANNOT_ANSWER


def test_a_model_refusal_does_not_decide_abstention(real_assistant: Assistant, fake_llm) -> None:
    """By default the model's nerves do not decide: the sources' own sentences stand in, checked,
    with a notice saying so."""
    fake_llm.reply = lambda m: CANNOT_ANSWER
    answer = _assistant(real_assistant, fake_llm.base_url).ask(Q)
    assert not answer.abstained and answer.backend == "extractive"
    assert "1K" in answer.text and "16K" in answer.text
    assert answer.notice and "could not be checked" in answer.notice
    assert all(s.supported for s in answer.sentences)


def test_weak_evidence_abstains_before_calling_the_model(
    real_assistant: Assistant, fake_llm
) -> None:
    answer = _assistant(real_assistant, fake_llm.base_url).ask(
        "How do I bake sourdough bread at home?"
    )
    assert answer.abstained
    assert fake_llm.requests == []


def test_streaming_yields_pieces_then_verified_answer(real_assistant: Assistant, fake_llm) -> None:
    """Only verified sentences are streamed: the invented one never shows, not even for a moment."""
    fake_llm.reply = answer_reply(
        "{title1} covers sequences from 1K to 16K tokens [1]. Made up claim about 77 cats [7]."
    )
    assistant = _assistant(real_assistant, fake_llm.base_url)
    items = list(assistant.ask_stream(Q))
    pieces, final = items[:-1], items[-1]
    assert isinstance(final, Answer) and all(isinstance(p, str) for p in pieces)
    assert fake_llm.requests[-1].get("stream") is True
    assert pieces and all(re.fullmatch(r"\S.* (\[\d+\])+[.!?] ", p) for p in pieces), pieces
    assert not any("cats" in p or "[7]" in p for p in pieces)
    assert "".join(pieces).strip() == final.text  # what was shown is the answer
    assert "16K" in final.text and not final.abstained
    assert assistant.ask(Q).text == final.text  # and the same as the answer not streamed


def test_server_failure_falls_back_to_extractive_with_notice(
    real_assistant: Assistant, fake_llm
) -> None:
    fake_llm.fault = "500"
    answer = _assistant(real_assistant, fake_llm.base_url).ask(Q)
    assert answer.backend == "extractive"
    assert answer.notice and "HTTP 500" in answer.notice
    assert "16K" in answer.text


def test_openai_without_endpoint_is_a_config_error(tmp_path) -> None:
    assistant = Assistant(Settings(data_dir=tmp_path, llm="openai", _env_file=None))
    with pytest.raises(ConfigError, match="RAG_LLM_BASE_URL"):
        assistant.llm  # noqa: B018
