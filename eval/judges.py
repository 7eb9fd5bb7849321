"""Citation judges for the eval: does this source support this answer sentence?

The offline judge is the verifier's own rule (`Verifier.features` + `Verifier.decide`), called
directly so it stays offline even when the app runs with RAG_VERIFY_JUDGE=llm; it re-judges the
final answer text, independently of the verdicts the app stored in `Answer.sentences`. The LLM
judge asks the configured OpenAI-compatible model with `rag.prompts.JUDGE_PROMPT`. Both see the
source as the verifier does (`as_evidence`: injected instructions removed), and both remember
their verdicts so the two can be compared pair by pair.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from rag.errors import LLMError
from rag.prompts import JUDGE_PROMPT, as_evidence
from rag.types import Source

log = logging.getLogger(__name__)


class RecordingJudge:
    """Wraps a (claim, source) -> bool function; caches and records every verdict by (claim, paper)."""

    def __init__(self, name: str, fn: Callable[[str, Source], bool | None]) -> None:
        self.name = name
        self.fn = fn
        self.verdicts: dict[tuple[str, str], bool | None] = {}
        self.failures = 0

    def __call__(self, claim: str, source: Source) -> bool:
        key = (claim, source.paper_id)
        if key not in self.verdicts:
            verdict = self.fn(claim, as_evidence(source))
            if verdict is None:
                self.failures += 1
            self.verdicts[key] = verdict
        return bool(self.verdicts[key])

    def reset(self) -> None:
        self.verdicts = {}


def offline_judge(assistant: object) -> RecordingJudge:
    verifier = assistant.verifier  # type: ignore[attr-defined]

    def fn(claim: str, source: Source) -> bool:
        return bool(verifier.decide(verifier.features(claim, source)).supported)

    return RecordingJudge("offline", fn)


def llm_judge(assistant: object) -> RecordingJudge:
    """The LLM judge; a failed call is recorded as None (counted, and left out of the agreement)."""
    llm = assistant.llm  # type: ignore[attr-defined]

    def fn(claim: str, source: Source) -> bool | None:
        prompt = JUDGE_PROMPT.format(source=f"{source.title}. {source.text}", claim=claim)
        try:
            reply = llm.chat([{"role": "user", "content": prompt}], 3)
        except LLMError as exc:
            log.warning("LLM judge failed: %s", exc)
            return None
        return reply.strip().lower().startswith("yes")

    return RecordingJudge("llm", fn)


def agreement(a: RecordingJudge, b: RecordingJudge) -> tuple[int, int]:
    """(pairs judged alike, pairs judged by both) over the verdicts the two judges share."""
    same = both = 0
    for key, verdict in a.verdicts.items():
        other = b.verdicts.get(key)
        if verdict is None or other is None:
            continue
        both += 1
        same += verdict == other
    return same, both
