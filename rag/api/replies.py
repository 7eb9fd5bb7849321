"""From chat messages to a question, and from an `Answer` to what an OpenAI client reads.

    messages ─► split_messages: the last user message is the question, earlier user/assistant
                turns the history (a "Sources:" list this API wrote becomes the turn's sources)
    prompt   ─► check_question (the legacy completions' prompt is the question)
    Answer   ─► reply_text (answer + "Sources:" list; a fallback notice line first when the
                LLM-backed model fell back), rag_field (the extra `rag` object),
                usage (tiktoken counts), SSE pieces (one word each)

Pure functions of their input: no I/O, no engine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from rag.api.schemas import MAX_QUESTION_CHARS, APIError, ChatMessage
from rag.chunking import count_tiktoken
from rag.types import Answer, Source

SOURCES_HEADER = "Sources:"
# The first line of a reply whose LLM-backed model fell back to the extractive answer (the model
# failed, or nothing it wrote held up against the sources): every client shows the content.
FALLBACK_NOTE = (
    "Note: the language model behind {model} gave no usable answer, so this is the extractive "
    "answer ({extractive}): sentences quoted from the sources."
)
_FALLBACK_LINE = re.compile(r"\ANote: the language model behind \S+ gave no usable answer[^\n]*\n+")

_SOURCES_BLOCK = re.compile(r"\n\s*\n" + SOURCES_HEADER + r"\n((?:\[\d+\][^\n]*(?:\n|$))+)\s*$")
_SOURCE_LINE = re.compile(r"^\[(\d+)\]\s*(.*?)(?:\s+\((\d{4}-\d{2}-\d{2})\))?\s*$")
_CITATION = re.compile(r"\[(\d+)\]")
_SURROGATE = re.compile("[\ud800-\udfff]")


# ---------------------------------------------------------------------------------- messages
def split_messages(messages: Sequence[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    """The last user message is the question; earlier user/assistant turns are the history.

    An assistant turn this API wrote ends with a "Sources:" list; it is taken off the text and its
    titles become the turn's `sources`, which lets the engine name the paper a follow-up means."""
    last = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last is None:
        raise APIError(
            400,
            "`messages` has no user message; send at least one "
            '{"role": "user", "content": "<your question>"}',
            param="messages",
            code="no_user_message",
        )
    for i, message in enumerate(messages):  # a JSON "\ud800" escape: not text (it was a 500)
        if bad := _SURROGATE.search(message.text):
            raise APIError(
                400,
                f"message {i} holds a lone surrogate (U+{ord(bad.group()):04X} at character "
                f"{bad.start() + 1}), which is not a character; send the text as valid UTF-8 "
                "(fix the \\u escape)",
                param=f"messages.{i}.content",
                code="invalid_text",
            )
    question = check_question(messages[last].text, f"messages.{last}.content", "last user message")
    history: list[dict[str, Any]] = []
    for message in messages[:last]:
        if message.role not in ("user", "assistant") or not message.text.strip():
            continue
        turn: dict[str, Any] = {"role": message.role, "content": message.text}
        if message.role == "assistant":
            body, titles = split_sources_block(_FALLBACK_LINE.sub("", message.text, count=1))
            turn["content"] = body
            if titles:
                turn["sources"] = titles
        history.append(turn)
    return question, history


def check_question(text: str, param: str, what: str) -> str:
    """The question with its whitespace collapsed; a 400 when it is empty or too long."""
    question = " ".join(text.split())
    if not question:
        raise APIError(
            400, f"the {what} is empty; put your question in it", param=param, code="empty_question"
        )
    if len(question) > MAX_QUESTION_CHARS:
        raise APIError(
            400,
            f"the question ({what}) is {len(question):,} characters; the limit is "
            f"{MAX_QUESTION_CHARS:,}, shorten it",
            param=param,
            code="question_too_long",
        )
    if bad := _SURROGATE.search(question):
        raise APIError(
            400,
            f"the {what} holds a lone surrogate (U+{ord(bad.group()):04X}), which is not a "
            "character; send the text as valid UTF-8 (fix the \\u escape)",
            param=param,
            code="invalid_text",
        )
    return question


def split_sources_block(text: str) -> tuple[str, list[str]]:
    """'answer [1]\\n\\nSources:\\n[1] Title (2020-11-08)' -> ('answer [1]', ['Title'])."""
    match = _SOURCES_BLOCK.search(text)
    if not match:
        return text, []
    titles = []
    for line in match.group(1).splitlines():
        parsed = _SOURCE_LINE.match(line.strip())
        if parsed and parsed.group(2):
            titles.append(parsed.group(2))
    return text[: match.start()].rstrip(), titles


# ---------------------------------------------------------------------------------- replies
def cited_numbers(answer: Answer) -> set[int]:
    if answer.abstained:
        return set()
    numbers = {n for s in answer.sentences for n in s.citations}
    return numbers | {int(n) for n in _CITATION.findall(answer.text)}


def reply_text(answer: Answer, note: str | None = None) -> str:
    """The verified answer plus the cited sources, for clients that ignore the `rag` field;
    `note` (the fallback notice) is its first line."""
    head = f"{note}\n\n" if note else ""
    if answer.abstained:
        return head + answer.text
    cited = [s for s in answer.sources if s.number in cited_numbers(answer)]
    if not cited:
        return head + answer.text
    lines = [
        f"[{s.number}] {s.title}" + (f" ({s.published})" if s.published else "") for s in cited
    ]
    return f"{head}{answer.text}\n\n{SOURCES_HEADER}\n" + "\n".join(lines)


def rag_field(answer: Answer) -> dict[str, Any]:
    cited = cited_numbers(answer)

    def source(s: Source) -> dict[str, Any]:
        return {
            "number": s.number,
            "title": s.title,
            "paper_id": s.paper_id,
            "published": s.published.isoformat() if s.published else None,
            "score": round(s.score, 4),
            "snippet": s.snippet,
            "url": s.url,
            "doi": s.doi,
            "categories": s.categories,
            "cited": s.number in cited,
        }

    return {
        "sources": [source(s) for s in answer.sources],
        "abstained": answer.abstained,
        "backend": answer.backend,
        "sentences": []
        if answer.abstained
        else [
            {
                "text": s.text,
                "citations": s.citations,
                "supported": s.supported,
                "score": round(s.score, 4),
            }
            for s in answer.sentences
        ],
        "standalone_question": answer.standalone_question,
        "filters": answer.filters,
        "notice": answer.notice,
    }


def usage(question: str, history: Sequence[dict[str, Any]], content: str) -> dict[str, int]:
    prompt = count_tiktoken(question) + sum(count_tiktoken(m["content"]) for m in history)
    completion = count_tiktoken(content)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def words(text: str) -> list[str]:
    """Pieces that join back to exactly `text`, one word (with its leading space) each."""
    return re.findall(r"\s*\S+\s*$|\s*\S+", text) or [text]
