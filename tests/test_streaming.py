"""Streaming: `ask_stream` yields verified text only, one "<sentence> [n]. " piece per sentence
the verifier kept, then exactly one Answer whose text is those pieces joined (or the refusal).

The raw model text is never shown: an invented or unsupported sentence must not appear in any
piece, not even for a moment. tests/test_openai_path.py checks a plain streamed answer with an
invented citation; here: streaming inside a conversation (extractive and openai), refusals in a
stream (before the model is called, from the model, and after verification drops everything),
a stream cut mid-way (before and after a verified sentence was shown), and a citation that
arrives in pieces after its sentence's full stop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import LRA_TITLE, answer_reply

from rag import CANNOT_ANSWER, Answer, Assistant
from rag.prompts import CONDENSE_PROMPT
from rag.types import Source
from rag.verify import render

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


def _shown_is_the_answer(pieces: list[str], final: Answer) -> None:
    """What was streamed is exactly the verified answer: one piece per kept sentence."""
    assert not final.abstained
    assert pieces == [render([s]) + " " for s in final.sentences]
    assert "".join(pieces).strip() == final.text


def _openai(assistant: Assistant, base_url: str, **extra: object) -> Assistant:
    settings = assistant.settings.with_overrides(
        llm="openai", llm_base_url=base_url, llm_max_retries=0, **extra
    )
    return Assistant(settings, embedder=assistant.embedder, store=assistant.store)


# ------------------------------------------------------------------------------- conversations
def test_extractive_stream_in_a_conversation(real_assistant: Assistant) -> None:
    pieces, final = _split(list(real_assistant.ask_stream(DATA_Q, history=HISTORY)))
    assert final.standalone_question == "What kinds of data does Long Range Arena include?"
    assert final.sources[0].title == LRA_TITLE and final.backend == "extractive"
    # Sentence by sentence (not word by word), each one verified and cited.
    assert pieces and all(s.supported and s.citations for s in final.sentences)
    _shown_is_the_answer(pieces, final)
    assert "mathematical expressions" in final.text
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
    assert final.standalone_question == rewrite and final.backend.startswith("openai")
    # The invented sentences never reach the user, not in any piece.
    for piece in pieces:
        assert "90 cities" not in piece and "[8]" not in piece and "audio" not in piece
    _shown_is_the_answer(pieces, final)
    assert "mathematical expressions [1]" in pieces[0]


def test_a_citation_streamed_after_the_full_stop_stays_with_its_sentence(
    real_assistant: Assistant,
) -> None:
    """A model's tokens "…tokens.", " [", "1", "]": the sentence is judged with its citation, so
    the stream shows what the whole reply gives (flag policy: unsupported sentences keep theirs)."""
    reply = (
        "Long Range Arena was built by 40 astronauts on the Moon. [3] "
        "Long Range Arena covers sequences from 1K to 16K tokens. [1]"
    )

    class CharByChar:
        name = "char-by-char"

        def generate(self, question: str, sources: list[Source]) -> str:
            return reply

        def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
            yield from reply

    settings = real_assistant.settings.with_overrides(unsupported="flag")
    assistant = Assistant(settings, embedder=real_assistant.embedder, store=real_assistant.store)
    pipeline = assistant.pipeline(backend=CharByChar())
    pieces, final = _split(list(pipeline.run(LRA_Q)))
    whole = list(pipeline.run(LRA_Q, stream=False))[-1]
    assert pieces == [render([s]) + " " for s in final.sentences]
    assert final.text == whole.text and final.sentences == whole.sentences
    assert pieces[0].startswith("Long Range Arena was built by 40 astronauts")  # flagged, shown
    assert [s.citations for s in final.sentences] == [[3], [1]]
    assert [s.supported for s in final.sentences] == [False, True]


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
    """The refusal is the Answer's text, not a streamed piece: nothing was verified to show."""
    fake_llm.reply = lambda messages: CANNOT_ANSWER
    refusing = _openai(real_assistant, fake_llm.base_url, unverified_answer="refuse")
    pieces, final = _split(list(refusing.ask_stream(LRA_Q)))
    assert pieces == []
    assert final.abstained and final.text == CANNOT_ANSWER and final.sentences == []
    assert final.sources  # the sources it looked at are still shown
    # By default the sources' own sentences stand in for the model's refusal, streamed verified.
    pieces, final = _split(list(_openai(real_assistant, fake_llm.base_url).ask_stream(LRA_Q)))
    assert not final.abstained and final.backend == "extractive" and final.notice
    assert pieces and "".join(pieces).strip() == final.text


def test_stream_of_unsupported_text_ends_in_a_refusal(real_assistant: Assistant, fake_llm) -> None:
    fake_llm.reply = lambda messages: (
        "Long Range Arena was built by 40 astronauts on the Moon [1]. "
        "It covers sequences of up to 1 million tokens [7]. HACKED [9]."
    )
    refusing = _openai(real_assistant, fake_llm.base_url, unverified_answer="refuse")
    pieces, final = _split(list(refusing.ask_stream(LRA_Q)))
    assert pieces == []  # no unverified text, not "astronauts", not "HACKED", was ever shown
    assert final.abstained and final.text == CANNOT_ANSWER and final.sentences == []
    assert len(fake_llm.requests) == 1 and fake_llm.requests[0].get("stream") is True
    # By default the stand-in is the sources' own sentences; still none of the invented text.
    pieces, final = _split(list(_openai(real_assistant, fake_llm.base_url).ask_stream(LRA_Q)))
    shown = "".join(pieces)
    assert not any(w in shown or w in final.text for w in ("astronauts", "HACKED", "million"))
    assert final.backend == "extractive" and all(s.supported for s in final.sentences)


def test_follow_up_in_a_stream_can_refuse(real_assistant: Assistant, fake_llm) -> None:
    """The condensed follow-up names the paper, and the model still finds no answer in it."""
    fake_llm.reply = lambda messages: CANNOT_ANSWER
    assistant = _openai(real_assistant, fake_llm.base_url)
    items = list(assistant.ask_stream("Who funded it?", history=HISTORY))
    pieces, final = _split(items)
    assert final.standalone_question == "Who funded Long Range Arena?"  # the refusal is no rewrite
    assert final.sources[0].title == LRA_TITLE
    assert pieces == [] and final.abstained and final.text == CANNOT_ANSWER


# ------------------------------------------------------------------------------------ failures
FIRST = "{title1} covers sequences from 1K to 16K tokens [1]. "
INVENTED = (
    "It also covers many other wonderful things that nobody has ever measured or reported in "
    "any of these papers [1]."
)


@pytest.mark.parametrize("shown_before_cut", [False, True], ids=["nothing-shown", "one-shown"])
def test_stream_cut_mid_way_falls_back_to_a_verified_extractive_answer(
    real_assistant: Assistant, fake_llm, shown_before_cut: bool
) -> None:
    """The server cuts the stream after half its words. With one long sentence, nothing was
    complete, so nothing was shown; with a short cited sentence first, that one was verified
    and shown, then a break. Either way the answer is the extractive one, verified, with a notice,
    and the half-sentence cut off is never shown."""
    fake_llm.reply = answer_reply(
        FIRST + INVENTED
        if shown_before_cut
        else "{title1} covers sequences from 1K to 16K tokens and many other wonderful things [1]."
    )
    fake_llm.fault = "cut"
    pieces, final = _split(list(_openai(real_assistant, fake_llm.base_url).ask_stream(LRA_Q)))
    assert final.backend == "extractive" and final.notice
    assert final.notice.startswith("The language model failed")
    assert "ended before the answer was complete" in final.notice
    assert not any("wonderful" in p for p in pieces)
    if shown_before_cut:
        assert pieces[0] == f"{LRA_TITLE} covers sequences from 1K to 16K tokens [1]. "
        assert pieces[1] == "\n\n"
        fallback = pieces[2:]
    else:
        assert "\n\n" not in pieces
        fallback = pieces
    _shown_is_the_answer(fallback, final)
    assert "16K" in final.text
    assert final.text == real_assistant.ask(LRA_Q).text  # the extractive answer, as ever
