"""Multi-turn conversations: condense a follow-up into a standalone question before retrieval.

    history (OpenAI / Gradio messages, or (user, bot) pairs) ─► normalize ─► trim to a token budget
        ─► LLM rewrite (CONDENSE_PROMPT), if a chat LLM is configured and answers sensibly
        ─► else the deterministic rewrite: find what the follow-up refers to and put its name
           in place of the pronoun ("does it include" ─► "does Long Range Arena include")

The subject of a follow-up is what the user was talking about. Walking back from the newest
turn to the newest question that stands on its own:
  1. the name the user's question gave ("What is MASFormer?" ─► "MASFormer"): the user's own
     word for the thing beats any title, and a cited paper's title may name it quite differently
     ("Efficient Long-Range Transformers: You Need to Attend More, ..."). A name after a
     preposition ("... reach on ImageNet-1K?") is what was asked about it, not the subject;
  2. else (the question asked "which paper ..." or named nothing) the paper the answer cited
     first (the UI and the API keep those titles in the assistant message's "sources"), by its
     name: a title "Name: subtitle" whose head is a coined name ("SlimFit: ..." ─► "SlimFit"),
     else the name the answer quotes the paper coining ("we propose MASFormer, ..."), else the
     title's head;
  3. else, when the question names nothing and no answer cited a paper, that question itself is
     appended as context.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from rag.chunking import count_tiktoken, truncate_tokens
from rag.prompts import CANNOT_ANSWER, CONDENSE_PROMPT, is_refusal
from rag.text import AUXILIARIES, QUESTION_WORDS, entities

log = logging.getLogger(__name__)

Message = dict[str, Any]

_CONNECTIVE = re.compile(r"^\s*(?:and|also|so|but|then|ok(?:ay)?|now|well)\b[\s,]*", re.I)
_WHAT_ABOUT = re.compile(r"^\s*(?:and\s+)?(?:what|how)\s+about\b", re.I)
_NOUNS = (
    r"paper|model|method|approach|benchmark|work|dataset|architecture|system|framework|study|"
    r"technique|algorithm|network|one|metric|task|suite"
)
# A reference to something named earlier, most specific first: "this paper", "its", "it", "they".
_REFERENCE = re.compile(
    rf"\b(?:(?:this|that|these|those|the\s+same|the|said)\s+(?:{_NOUNS})s?)\b(?:'s)?"
    r"|\b(?:its|it|their|they|them)\b",
    re.I,
)
_ASKS_FOR_A_PAPER = re.compile(rf"^\s*(?:which|what)\s+(?:{_NOUNS})s?\b", re.I)
_REFERENCE_ONLY_SHORT = re.compile(r"\b(?:this|that|these|those|same|former|latter)\b", re.I)
# What a question or request opens with: never the start of a name, even in capitals ("WHAT is").
# Local addition to the shared sets: the imperatives that open a request ("Tell me about ...").
_REQUEST_VERBS = frozenset(
    ["tell", "give", "list", "name", "show", "explain", "describe", "compare", "summarize"]
)
_QUESTION_WORDS = QUESTION_WORDS | AUXILIARIES | _REQUEST_VERBS
_NAME_JOINERS = frozenset({"of", "de", "von"})  # "Mixture of Experts"
# How an abstract introduces what it names: "we propose X", "(dubbed X)", "namely X", "termed X".
_COINS = re.compile(
    r"\b(?:propos(?:e|es|ed)|introduc(?:e|es|ed)|present(?:s|ed)?|call(?:s|ed)?|"
    r"name(?:s|d)|namely|dub(?:s|bed)?|term(?:s|ed)?)\b",
    re.I,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# A name after one of these is what the question asks about the subject with ("reach on
# ImageNet-1K", "compared with BERT"), not the subject itself. "of" is not one: "the goals of X".
_PREPOSITIONS = frozenset(
    {"on", "in", "at", "for", "with", "from", "to", "than", "against", "over", "using", "via"}
    | {"across", "by", "into", "onto", "versus", "vs", "within", "between", "among", "under"}
)
_TAGS = re.compile(r"<[^>]{1,200}>")


# ------------------------------------------------------------------------------------ history
def _text(content: Any) -> str:
    if isinstance(content, list):  # OpenAI / Gradio multimodal parts
        return " ".join(_text(p) for p in content)
    if isinstance(content, dict):  # {"type": "text", "text": ...}; files and images carry no text
        return str(content.get("text") or content.get("content") or "")
    text = str(content or "")
    if "<" in text and _TAGS.search(text):  # a Gradio chatbot value holds rendered HTML
        text = _TAGS.sub(" ", text)
    return " ".join(text.split())


def normalize_history(history: Sequence[Any] | None) -> list[Message]:
    """Accept OpenAI/Gradio message dicts (or objects with .role/.content) or (user, bot) pairs."""
    out: list[Message] = []
    for item in history or []:
        if not isinstance(item, dict) and hasattr(item, "role") and hasattr(item, "content"):
            item = {"role": item.role, "content": item.content}  # gradio.ChatMessage
        if isinstance(item, dict) and "role" in item:
            out.append({**item, "content": _text(item.get("content"))})
        elif isinstance(item, list | tuple) and len(item) == 2:
            user, bot = item
            if user:
                out.append({"role": "user", "content": _text(user)})
            if bot:
                out.append({"role": "assistant", "content": _text(bot)})
    return [m for m in out if m["role"] in ("user", "assistant") and m["content"]]


def trim_history(history: list[Message], budget: int) -> list[Message]:
    """The newest messages that fit in `budget` tiktoken tokens (the newest one cut to fit)."""
    kept: list[Message] = []
    used = 0
    for message in reversed(history):
        cost = count_tiktoken(message["content"]) + 4
        if used + cost > budget:
            if not kept and budget > 8:  # one huge message: keep its start rather than nothing
                kept.append({**message, "content": truncate_tokens(message["content"], budget - 4)})
            break
        kept.append(message)
        used += cost
    return list(reversed(kept))


# -------------------------------------------------------------------------------- the subject
def short_name(title: str) -> str:
    """'Long Range Arena: A Benchmark for Efficient Transformers' -> 'Long Range Arena'."""
    head = re.split(r"\s*[:\u2013\u2014]\s+|\s+-\s+", title, maxsplit=1)[0].strip()
    return head if head and len(head.split()) <= 6 else title.strip()


def is_coined(word: str) -> bool:
    """A made-up name, by its shape: a capital or digit past the first letter of a part
    ("MASFormer", "MP-SENet", "TLEG", "GPT-4"), not an ordinary capitalised word ("Efficient")."""
    core = word.strip("\"'`()[],.;:?!“”")
    if len(core) < 3 or not core[0].isalpha():
        return False
    parts = [p for p in core.split("-") if p]
    return any(any(c.isupper() or c.isdigit() for c in p[1:]) for p in parts)


def coined_name(text: str) -> str | None:
    """The name a quoted abstract sentence coins: "(TLEG)" or the first coined word after
    "we propose" / "dubbed" / "namely" ... in a sentence that introduces something."""
    for sentence in _SENTENCE_END.split(text):
        verb = _COINS.search(sentence)
        if not verb:
            continue
        acronym = re.search(r"\(([A-Za-z][\w-]{1,30})\)", sentence)
        if acronym and is_coined(acronym.group(1)):
            return acronym.group(1)
        for word in sentence[verb.end() :].split()[:12]:
            if is_coined(word):
                return word.strip("\"'`()[],.;:?!“”")
    return None


def paper_name(title: str, answer: str = "") -> str:
    """How to call a cited paper in a question: its coined name, else its title's head."""
    head = short_name(title)
    if len(head.split()) <= 2 and any(is_coined(w) for w in head.split()):
        return head  # "SlimFit: Memory-Efficient ..." / "DeiT-LT Distillation ..." heads
    return coined_name(answer) or head


def _name_like(core: str, first: bool) -> bool:
    if len(core) < 2 or (first and core.lower() in _QUESTION_WORDS):
        return False
    if any(c.isupper() for c in core[1:]) or (core[0].isupper() and any(c.isdigit() for c in core)):
        return (
            True  # GPT-4, SiMBA, LRA, CamelCase; not "top-1", "16k" (a digit alone names nothing)
        )
    return core[0].isupper() and not first


def name_in(question: str) -> str | None:
    """The longest run of capitalised words in a question: its named subject, if it has one."""
    runs: list[list[str]] = [[]]
    words = question.split()
    for i, word in enumerate(words):
        core = word.strip("\"'()[],.;:?!")
        if core and _name_like(core, i == 0):
            runs[-1].append(core)
        elif runs[-1] and core.lower() in _NAME_JOINERS:
            runs[-1].append(core)  # "Long Range Arena of ..." / "Mixture of Experts"
        else:
            runs.append([])
        if word[-1:] in ",;:?!.)":  # punctuation ends a name
            runs.append([])
    names = []
    for run in runs:
        while run and run[-1].lower() in _NAME_JOINERS:
            run.pop()
        if run:
            names.append(" ".join(run))
    return max(names, key=lambda r: len(r.split()), default=None)


def users_subject(question: str) -> str | None:
    """The name a question is about: its name, unless that stands after a preposition."""
    name = name_in(question)
    if not name:
        return None
    before = question[: question.find(name.split()[0])].split()
    if before and before[-1].lower().strip(",;:") in _PREPOSITIONS:
        return None
    return name


def is_follow_up(message: str) -> bool:
    """Does the message lean on the conversation (a pronoun, "what about", or a bare fragment)?"""
    if _CONNECTIVE.match(message) or _WHAT_ABOUT.match(message) or _REFERENCE.search(message):
        return True
    words = message.split()
    if _REFERENCE_ONLY_SHORT.search(message) and len(words) <= 6:
        return True
    return len(words) <= 4 and not entities(message) and not name_in(message)


def subject_of(history: list[Message]) -> tuple[str, bool] | None:
    """(what a follow-up refers to, whether it is a name): the name the user gave, back to the
    newest question that stands on its own, else the paper the newest answer cited."""
    cited: str | None = None  # the paper the newest answer cited, by name
    for message in reversed(history):
        if message["role"] == "assistant":
            sources = message.get("sources") or []
            if cited is None and sources and not is_refusal(message["content"]):
                first = sources[0]
                title = first.get("title", "") if isinstance(first, dict) else str(first)
                if title:
                    cited = paper_name(title, message["content"])
            continue
        content = message["content"]
        name = name_in(content)
        own = users_subject(content)
        if own and not _ASKS_FOR_A_PAPER.match(content):  # "Which paper ...": the answer is it
            return own, True
        if cited is not None and (name or not is_follow_up(content)):
            return cited, True
        if not is_follow_up(content):
            return content.rstrip(" ?.!"), False
    return (cited, True) if cited is not None else None


def _last_question(history: list[Message]) -> str | None:
    """The newest user message that stands on its own."""
    for message in reversed(history):
        if message["role"] == "user" and not is_follow_up(message["content"]):
            return str(message["content"])
    return None


def condense_deterministic(history: list[Message], message: str) -> str:
    """Put the name of what the follow-up refers to in place of its pronoun (no model needed)."""
    if not history or not is_follow_up(message):
        return message
    body = _CONNECTIVE.sub("", message.strip(), count=1)
    body = body[:1].upper() + body[1:]
    end = body[-1] if body and body[-1] in "?.!" else "?"
    body = body.rstrip("?.! ")
    what_about = _WHAT_ABOUT.match(body)
    rest = body[what_about.end() :].strip() if what_about else body
    own = name_in(rest)
    if own and not _REFERENCE.search(rest):
        # "What about SiMBA?" / "And Performer?": the previous question, asked of the new subject.
        previous = _last_question(history)
        if previous:
            old = name_in(previous)
            if old:
                return previous.replace(old, own, 1)
            return f"{previous.rstrip(' ?.!')} ({own})?"
        return message
    found = subject_of(history)
    if not found:
        return message
    subject, is_name = found
    if not is_name:
        return f"{body}{end} (regarding: {subject})"
    if subject.lower() in body.lower():
        return message
    if what_about:  # "What about its datasets?" / "What about the speed?"
        rest = _REFERENCE.sub(lambda m: _possessive(m.group(0), subject), rest, count=1)
        if subject not in rest:
            rest = f"{rest} of {subject}" if rest else subject
        return f"What about {rest}{end}"
    references = list(_REFERENCE.finditer(body))
    if references:
        # Prefer "it"/"this paper" over "they" (in "did they evaluate it" they are the authors).
        pick = min(references, key=lambda m: m.group(0).lower() in ("they", "them", "their"))
        replaced = _possessive(pick.group(0), subject)
        return f"{body[: pick.start()]}{replaced}{body[pick.end() :]}{end}"
    return f"{body} ({subject}){end}"


def _possessive(reference: str, subject: str) -> str:
    low = reference.lower()
    if low in ("its", "their") or low.endswith("'s"):
        return f"{subject}'s"
    return subject


# ----------------------------------------------------------------------------------- condense
def _clean_rewrite(reply: str) -> str | None:
    """The model's standalone question, or None when the reply is not one."""
    lines = [ln.strip() for ln in reply.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    line = re.sub(
        r"^(?:standalone\s+question|question|rewritten(?:\s+question)?)\s*:\s*",
        "",
        lines[0],
        flags=re.I,
    )
    line = line.strip().strip("\"'`“”").strip()
    if not line or len(line) > 500 or is_refusal(line) or line == CANNOT_ANSWER:
        return None
    return line


def condense(
    history: list[Message],
    message: str,
    llm_chat: Callable[[list[dict[str, str]]], str] | None = None,
) -> str:
    """The standalone question for `message` after `history` (which is already trimmed)."""
    if not history:
        return message
    if llm_chat is not None:
        lines = "\n".join(f"{m['role']}: {m['content']}" for m in history)
        prompt = CONDENSE_PROMPT.format(history=lines, message=message)
        try:
            rewritten = _clean_rewrite(llm_chat([{"role": "user", "content": prompt}]))
        except Exception as exc:  # any failure: the deterministic rewrite still works
            log.warning("condensing with the LLM failed (%s); using the rule-based rewrite", exc)
            rewritten = None
        if rewritten:
            return rewritten
    return condense_deterministic(history, message)
