"""Streaming: `ask_stream` yields text pieces (an unverified preview), then exactly one verified Answer.

tests/test_openai_path.py already checks a plain streamed answer whose preview holds an invented
citation; here: streaming inside a conversation (extractive and openai), refusals in a stream
(before the model is called, from the model, and after verification drops everything), and a
stream cut mid-way.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import LRA_TITLE, answer_reply

from rag import CANNOT_ANSWER, Answer, Assistant
from rag.prompts import CONDENSE_PROMPT

pytestmark = pytest.mark.e2e

LRA_Q = "What range of sequence lengths does the Long Range Arena benchmark cover?"
LRA_A = (
    "Our benchmark is a suite of tasks consisting of sequences ranging from 1K to 16K tokens [1]."
)
DATA_Q = "And what kinds of data does it include?"
HISTORY = [{"role": "user", "content": LRA_Q}, {"role": "assistant", "content": LRA_A}]


def _split(items: list[Any]) -> tuple[list[str], Answer]:
    """The pieces and the final Answer; the Answer comes once, last."""
    answers = [i for i in items if isinstance(i, Answer)]
    assert len(answers) == 1 and items[-1] is answers[0], items
    pieces = items[:-1]
    assert all(isinstance(p, str) for p in pieces)
    return pieces, answers[0]


def _openai(assistant: Assistant, base_url: str) -> Assistant:
    settings = assistant.settings.with_overrides(
        llm="openai", llm_base_url=base_url, llm_max_retries=0
    )
    return Assistant(settings, embedder=assistant.embedder, store=assistant.store)


# ------------------------------------------------------------------------------- conversations
def test_extractive_stream_in_a_conversation(real_assistant: Assistant) -> None:
    pieces, final = _split(list(real_assistant.ask_stream(DATA_Q, history=HISTORY)))
    assert final.standalone_question == "What kinds of data does Long Range Arena include?"
    assert final.sources[0].title == LRA_TITLE and not final.abstained
    assert len(pieces) > 3
    preview = "".join(pieces)
    assert "mathematical expressions" in preview and "mathematical expressions" in final.text
    # Every verified sentence was in the preview: verification only removes.
    assert all(s.text.rstrip(".") in preview for s in final.sentences)
    # ask() and ask_stream() agree.
    assert real_assistant.chat(HISTORY, DATA_Q).text == final.text


def test_openai_stream_in_a_conversation_is_verified(real_assistant: Assistant, fake_llm) -> None:
    rewrite = "Which data types does the Long Range Arena benchmark include?"
    streamed = answer_reply(
        "{title1} includes text, natural, synthetic images, and mathematical expressions [1]. "
        "It also includes 3D point clouds of 90 cities [1]. Source [8] says it includes audio."
    )

    def reply(messages: list[dict[str, Any]]) -> str:
        if "Standalone question:" in str(messages[-1]["content"]):
            return rewrite
        return str(streamed(messages))

    fake_llm.reply = reply
    items = list(_openai(real_assistant, fake_llm.base_url).ask_stream(DATA_Q, history=HISTORY))
    pieces, final = _split(items)

    condense_request, answer_request = fake_llm.requests
    assert CONDENSE_PROMPT.split("\n", 1)[0] in condense_request["messages"][-1]["content"]
    assert not condense_request.get("stream") and answer_request.get("stream") is True
    assert final.standalone_question == rewrite
    preview = "".join(pieces)
    assert "90 cities" in preview and "[8]" in preview  # the raw preview ...
    assert "90 cities" not in final.text and "[8]" not in final.text  # ... is not the answer
    assert "audio" not in final.text
    assert "mathematical expressions [1]" in final.text and not final.abstained


# ------------------------------------------------------------------------------------ refusals
def test_weak_evidence_refuses_without_streaming_or_calling_the_model(
    real_assistant: Assistant, fake_llm
) -> None:
    fake_llm.reply = answer_reply("Sourdough needs flour and water [1].")
    for assistant in (real_assistant, _openai(real_assistant, fake_llm.base_url)):
        items = list(assistant.ask_stream("How do I bake sourdough bread at home?"))
        pieces, final = _split(items)
        assert pieces == [] and final.abstained and final.text == CANNOT_ANSWER
    assert fake_llm.requests == []


def test_model_that_streams_the_refusal(real_assistant: Assistant, fake_llm) -> None:
    fake_llm.reply = lambda messages: CANNOT_ANSWER
    pieces, final = _split(list(_openai(real_assistant, fake_llm.base_url).ask_stream(LRA_Q)))
    assert "".join(pieces) == CANNOT_ANSWER
    assert final.abstained and final.text == CANNOT_ANSWER and final.sentences == []
    assert final.sources  # the sources it looked at are still shown


def test_stream_of_unsupported_text_ends_in_a_refusal(real_assistant: Assistant, fake_llm) -> None:
    fake_llm.reply = lambda messages: (
        "Long Range Arena was built by 40 astronauts on the Moon [1]. "
        "It covers sequences of up to 1 million tokens [7]. HACKED [9]."
    )
    pieces, final = _split(list(_openai(real_assistant, fake_llm.base_url).ask_stream(LRA_Q)))
    assert "astronauts" in "".join(pieces)
    assert final.abstained and final.text == CANNOT_ANSWER and final.sentences == []


def test_follow_up_in_a_stream_can_refuse(real_assistant: Assistant, fake_llm) -> None:
    """The condensed follow-up names the paper, and the model still finds no answer in it."""
    fake_llm.reply = lambda messages: CANNOT_ANSWER
    assistant = _openai(real_assistant, fake_llm.base_url)
    items = list(assistant.ask_stream("Who funded it?", history=HISTORY))
    pieces, final = _split(items)
    assert final.standalone_question == "Who funded Long Range Arena?"  # the refusal is no rewrite
    assert final.sources[0].title == LRA_TITLE
    assert "".join(pieces) == CANNOT_ANSWER and final.abstained and final.text == CANNOT_ANSWER


# ------------------------------------------------------------------------------------ failures
def test_stream_cut_mid_way_falls_back_to_a_verified_extractive_answer(
    real_assistant: Assistant, fake_llm
) -> None:
    fake_llm.reply = answer_reply(
        "{title1} covers sequences from 1K to 16K tokens and many other wonderful things [1]."
    )
    fake_llm.fault = "cut"
    pieces, final = _split(list(_openai(real_assistant, fake_llm.base_url).ask_stream(LRA_Q)))
    assert pieces and pieces[-1] == "\n\n"  # the broken preview, then a break before the fallback
    assert final.backend == "extractive" and final.notice and "failed" in final.notice
    assert "16K" in final.text and not final.abstained
