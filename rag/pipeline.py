"""The ask pipeline, one pass per question, over parts handed in by `Assistant`.

    question ─► condense (follow-ups) ─► filters (explicit, or read from the question)
             ─► retrieve ─► evidence gate (abstain before any model call)
             ─► backend.stream / generate ─► verify sentence by sentence ─► Answer

What reaches the user is verified text only: while a backend streams, each sentence is judged
as soon as the next one starts, and only what survives is passed on (an unsupported sentence
never appears, not even for a moment). An `LLMError` from the backend becomes the extractive
answer with a notice naming the failure.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rag.answer import names_found
from rag.backends.base import Backend, Chat
from rag.chat import condense, normalize_history, trim_history
from rag.errors import LLMError
from rag.prompts import CANNOT_ANSWER
from rag.question import analyse
from rag.retrieve import Filters
from rag.settings import Settings
from rag.text import citations, number_values, split_sentences, strip_citations, terms
from rag.types import Answer, Sentence, Source
from rag.verify import Verifier, render

log = logging.getLogger(__name__)

# Where one sentence holds several claims: "; ", ", and ", ", while ", ", which ", ", " …
_CLAUSE = re.compile(r";\s+|,\s+(?:and|but|while|whereas|which|and\s+it)\s+|,\s+|\s+while\s+")


# A clause that opens with a pronoun or relative word depends on the clause before it; so does a
# later clause that opens in lower case with anything but a determiner: it has no subject of its
# own (", reaching …", ", and pays less attention to …"). Alone each is a fragment.
_LEANS_BACK = re.compile(
    r"(?:it|its|they|their|them|this|these|those|that|which|who|whose|he|she|both|each)\b", re.I
)
_OWN_SUBJECT = re.compile(
    r"(?:[A-Z0-9]|(?:the|a|an|we|our|all|most|some|many|several|every|no|one|two|three)\b)"
)


def restates(claim: str, question: str) -> bool:
    """Every content word of the claim is already in the question: it repeats the question
    ("A simple addition lets X do Y [1]." for "What simple addition lets X do Y?") and answers
    nothing, however well a source supports it."""
    claim = strip_citations(claim)
    words = set(terms(claim))
    if not words or not number_values(claim) <= number_values(question):
        return False
    return words <= set(terms(question))


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+(?:[.,][0-9]+)*", text.lower()))


def _all_sentences(question: str, sources: list[Source], budget: int) -> list[Any]:
    from rag.evidence import Excerpt, source_sentences

    return [Excerpt(s.number, s.title, tuple(source_sentences(s))) for s in sources]


# A sentence that only repeats the question is not shown (off only for the ablation).
RESTATEMENTS_DROPPED = True


class PaperNames:
    """For a list question ("which papers ...", compare, both) the answer names the papers it
    lists: the first supported sentence shown from a paper opens with the paper's title ("<title>:
    <sentence> [n]"), unless the sentence already names it (its title, or the name before the
    title's colon). The title is the source's own text, so the verdict stands."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.titles = {src.number: src.title.strip() for src in sources if src.title.strip()}
        self.named: set[int] = set()

    def label(self, sentence: Sentence) -> Sentence:
        if not sentence.supported or not sentence.citations:
            return sentence
        number = sentence.citations[0]
        title = self.titles.get(number)
        if title is None or number in self.named:
            return sentence
        self.named.add(number)
        short = title.split(":", 1)[0].strip()
        text = sentence.text.lower()
        if title.lower() in text or (short != title and short.lower() in text):
            return sentence
        return sentence.model_copy(update={"text": f"{title}: {sentence.text}"})


@dataclass
class Pipeline:
    settings: Settings
    retriever: Any  # .search(question, top_k, filters) -> list[Source]
    backend: Backend
    fallback: Backend  # the extractive backend
    verifier: Verifier
    parse_filters: Callable[[str], Filters | None]
    # The excerpts a chat model was shown (rag.evidence.select); None: the sources' sentences.
    excerpts: Callable[[str, list[Source], int], list[Any]] | None = None

    def run(
        self,
        question: str,
        top_k: int | None = None,
        *,
        filters: Filters | None = None,
        history: Sequence[Any] | None = None,
        stream: bool = True,
    ) -> Iterator[str | Answer]:
        """Yield verified text pieces (when streaming), then the final `Answer`."""
        backend = self.backend
        timings: dict[str, float] = {}
        started = time.perf_counter()
        standalone = question
        messages = normalize_history(history)
        if messages:
            messages = trim_history(messages, self.settings.history_tokens)
            llm_chat = backend.chat if isinstance(backend, Chat) else None
            standalone = condense(messages, question, llm_chat)
        explicit = filters is not None and not filters.is_empty()
        filters = self._filters_for(standalone, filters)
        notice = None
        top_k = top_k or self.settings.top_k
        t = time.perf_counter()
        sources = self.retriever.search(standalone, top_k, filters)
        if (
            not explicit
            and filters is not None
            and not filters.is_empty()
            and (not sources or sources[0].score < self.settings.min_score)
        ):
            described = ", ".join(f"{k} {v}" for k, v in filters.describe().items())
            notice = f"No paper matched the filter read from the question ({described}); searched all papers."
            filters = None
            sources = self.retriever.search(standalone, top_k, None)
        timings["retrieve"] = time.perf_counter() - t
        base = {
            "question": question,
            "standalone_question": standalone if standalone != question else None,
            "filters": filters.describe() if filters else {},
            "sources": sources,
            "notice": notice,
            "timings": timings,
        }
        if not self.evidence_ok(standalone, sources):
            timings["total"] = time.perf_counter() - started
            yield Answer(text=CANNOT_ANSWER, abstained=True, backend=backend.name, **base)
            return
        t = time.perf_counter()
        kept: list[Sentence] = []
        names = (
            PaperNames(sources)
            if self.settings.name_papers and analyse(standalone).is_list
            else None
        )
        try:
            pieces = (
                backend.stream(standalone, sources)
                if stream
                else iter([backend.generate(standalone, sources)])
            )
            for shown in self._verified(pieces, standalone, sources, kept, timings, t, names):
                if stream:
                    yield shown
        except LLMError as exc:
            log.warning("LLM failed, falling back to extractive: %s", exc)
            base["notice"] = (
                f"The language model failed ({exc}); this is the extractive answer instead."
            )
            backend = self.fallback
            if stream and kept:
                yield "\n\n"
            kept, shown = self._extractive(standalone, sources, timings, t, names)
            if stream:
                yield from shown
        if (
            backend.name != self.fallback.name
            and self.settings.unverified_answer == "extractive"
            and not any(s.supported for s in kept)
        ):
            # Nothing the model wrote survived verification. The evidence gate already judged
            # the question worth answering, so the sources' own sentences get their turn; the
            # extractive backend abstains by its own answerability model.
            rescued, shown = self._extractive(standalone, sources, timings, t, names)
            if any(s.supported for s in rescued):
                base["notice"] = base["notice"] or (
                    "The model's answer could not be checked against the sources; "
                    "these are the sources' own sentences."
                )
                backend, kept = self.fallback, kept + rescued
                if stream:
                    yield from shown
        timings["answer"] = time.perf_counter() - t - timings.get("verify", 0.0)
        supported = any(s.supported for s in kept)
        timings["total"] = time.perf_counter() - started
        yield Answer(
            text=render(kept) if supported else CANNOT_ANSWER,
            sentences=kept if supported or self.settings.unsupported == "flag" else [],
            abstained=not supported,
            backend=backend.name,
            **base,
        )

    def _extractive(
        self,
        question: str,
        sources: list[Source],
        timings: dict[str, float],
        started: float,
        names: PaperNames | None = None,
    ) -> tuple[list[Sentence], list[str]]:
        """The fallback backend's answer, verified: its judged sentences and what is shown."""
        kept: list[Sentence] = []
        raw = self.fallback.generate(question, sources)
        shown = list(self._verified(iter([raw]), question, sources, kept, timings, started, names))
        return kept, shown

    def _verified(
        self,
        pieces: Iterator[str],
        question: str,
        sources: list[Source],
        kept: list[Sentence],
        timings: dict[str, float],
        started: float,
        names: PaperNames | None = None,
    ) -> Iterator[str]:
        """Judge each sentence once it is complete (the next one has begun, or the text ended);
        append the judged sentences to `kept` and yield the rendering of each one shown."""
        buffer = ""
        done = 0  # sentences of `buffer` already judged

        def judge(sentence: str) -> Iterator[str]:
            t = time.perf_counter()
            if RESTATEMENTS_DROPPED and restates(sentence, question):
                return
            _text, judged = self.verifier.verify(sentence, sources)
            if not any(s.supported for s in judged):
                judged = self.salvage(sentence, question, sources) or judged
            timings["verify"] = timings.get("verify", 0.0) + time.perf_counter() - t
            for s in judged:
                if names is not None:
                    s = names.label(s)
                if "first_text" not in timings:
                    timings["first_text"] = time.perf_counter() - started
                kept.append(s)
                yield render([s]) + " "

        for piece in pieces:
            buffer += piece
            sentences = split_sentences(buffer)
            complete = len(sentences) - 1
            # "… tokens. [1" : a citation still arriving belongs to the sentence before it
            # (split_sentences attaches it once it is closed), so that sentence waits for it.
            if complete > 0 and re.fullmatch(r"[\[\]\d\s,;]*", sentences[-1]):
                complete -= 1
            while done < complete:
                yield from judge(sentences[done])
                done += 1
        for sentence in split_sentences(buffer)[done:]:
            yield from judge(sentence)

    def salvage(self, sentence: str, question: str, sources: list[Source]) -> list[Sentence]:
        """What of a sentence the verifier rejected as a whole can still be shown, checked.

        A short answer ("sigmaReparam [1]") is too short to be judged on its own, so it stands
        only if it is written word for word in a sentence of a source that was picked as bearing
        on the question. A long sentence that mixes a supported clause with an unsupported one
        (a number taken from another source, say) keeps each clause the verifier supports.
        """
        claim = strip_citations(sentence).strip().rstrip(".!?")
        by_number = {s.number: s for s in sources}
        cited = [n for n in citations(sentence) if n in by_number]
        if not terms(claim):
            return []  # "[2] and [3]" leaves "and": no word a source could be checked for
        if len(claim.split()) < 3:
            needle = _norm(claim)
            select = self.excerpts or _all_sentences
            for excerpt in select(question, sources, self.settings.context_tokens):
                if cited and excerpt.number not in cited:
                    continue
                for shown in excerpt.sentences:
                    if needle and f" {needle} " in f" {_norm(shown)} ":
                        return [
                            Sentence(
                                text=claim,
                                citations=[excerpt.number],
                                supported=True,
                                support=shown,
                                support_source=excerpt.number,
                            )
                        ]
            return []
        clauses = [c.strip() for c in _CLAUSE.split(claim) if c and len(c.split()) >= 3]
        if len(clauses) < 2:
            return []
        marks = "".join(f"[{n}]" for n in cited)
        kept: list[Sentence] = []
        previous_kept = False
        for i, clause in enumerate(clauses):
            leans_back = _LEANS_BACK.match(clause) or (i and not _OWN_SUBJECT.match(clause))
            if leans_back and not previous_kept:
                continue  # "it reports 84%" means nothing true once what "it" was is dropped
            _text, judged = self.verifier.verify(f"{clause} {marks}.", sources)
            supported = [s for s in judged if s.supported]
            kept += supported
            previous_kept = bool(supported)
        return kept

    def evidence_ok(self, question: str, sources: list[Source]) -> bool:
        """Worth answering: the best source is close enough, or names all the question names;
        and, for a chat model under RAG_ANSWER_GATE=answerable (not the default), some source
        sentence is likely enough to answer by the fitted answerability model (the extractive
        backend's): then whether to abstain rests on the evidence before any model call."""
        if not sources:
            return False
        if not (sources[0].score >= self.settings.min_score or names_found(question, sources[0])):
            return False
        gate = getattr(self.fallback, "can_answer", None)
        chat_model = self.backend.name != self.fallback.name
        if self.settings.answer_gate == "answerable" and gate and chat_model:
            return bool(gate(question, sources))
        return True

    def _filters_for(self, question: str, filters: Filters | None) -> Filters | None:
        parsed = self.parse_filters(question)
        if filters is None or filters.is_empty():
            return parsed if parsed and not parsed.is_empty() else filters
        return filters
