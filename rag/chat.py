"""Multi-turn conversations: condense a follow-up into a standalone question before retrieval.

History is a list of OpenAI-style messages ({"role": "user"|"assistant", "content": str}); an
assistant message may also carry "sources" (titles it cited), which lets the deterministic rewrite
name the paper "it" refers to. With an LLM configured, the LLM rewrites instead (falling back to
the deterministic rewrite if it fails). History is trimmed to a tiktoken budget, newest kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from rag.chunking import count_tiktoken
from rag.prompts import CONDENSE_PROMPT
from rag.text import entities

Message = dict[str, Any]

_FOLLOW_UP = re.compile(
    r"^(and|also|what about|how about|then|so|but)\b|\b(it|its|it's|they|them|their|this|that|these|"
    r"those|the paper|the model|the method|the approach|the benchmark|same|former|latter)\b",
    re.I,
)


def normalize_history(history: Sequence[Any] | None) -> list[Message]:
    """Accept OpenAI/Gradio message dicts or (user, assistant) pairs."""
    out: list[Message] = []
    for item in history or []:
        if isinstance(item, dict) and "role" in item:
            content = item.get("content")
            if isinstance(content, list):  # gradio multimodal parts
                content = " ".join(
                    str(p.get("text", p)) if isinstance(p, dict) else str(p) for p in content
                )
            out.append({**item, "content": str(content or "")})
        elif isinstance(item, list | tuple) and len(item) == 2:
            user, bot = item
            if user:
                out.append({"role": "user", "content": str(user)})
            if bot:
                out.append({"role": "assistant", "content": str(bot)})
    return [m for m in out if m["role"] in ("user", "assistant")]


def trim_history(history: list[Message], budget: int) -> list[Message]:
    kept: list[Message] = []
    used = 0
    for message in reversed(history):
        cost = count_tiktoken(message["content"]) + 4
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    return list(reversed(kept))


def is_follow_up(message: str) -> bool:
    words = message.split()
    return bool(_FOLLOW_UP.search(message)) or (len(words) <= 4 and not entities(message))


def condense_deterministic(history: list[Message], message: str) -> str:
    """Carry the paper (or the previous question's subject) into a follow-up question."""
    if not history or not is_follow_up(message):
        return message
    subject = None
    for previous in reversed(history):
        if previous["role"] == "assistant" and previous.get("sources"):
            subject = previous["sources"][0]
            break
        if previous["role"] == "user":
            subject = previous["content"].rstrip("?")
            break
    if not subject:
        return message
    return f"{message.rstrip()} (regarding: {subject})"


def condense(
    history: list[Message],
    message: str,
    llm_chat: Callable[[list[dict[str, str]]], str] | None = None,
) -> str:
    if not history:
        return message
    if llm_chat is not None:
        lines = "\n".join(f"{m['role']}: {m['content']}" for m in history)
        try:
            rewritten = llm_chat(
                [
                    {
                        "role": "user",
                        "content": CONDENSE_PROMPT.format(history=lines, message=message),
                    }
                ]
            ).strip()
            if rewritten and len(rewritten) < 600:
                return rewritten.splitlines()[0]
        except Exception:
            pass
    return condense_deterministic(history, message)
