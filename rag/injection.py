"""Is a sentence of an abstract an instruction to whoever reads it, rather than a claim about research?

Abstracts are untrusted data. A sentence that talks *to* the reader, the assistant or "any model
summarising this text", or *about* the answers, summaries or prompts that will be made from it, is
never evidence: `rag.prompts.as_evidence` drops it before the verifier judges claims, and the
extractive backend never quotes it.

Data flow: `is_instruction(sentence)` first calls `normalize` (NFKC, format characters such as
zero-width spaces removed, Greek/Cyrillic look-alikes inside Latin text mapped to Latin), then
looks at several *views* of the sentence — the normalised text, a Latin "skeleton" (every
look-alike and l33t digit mapped to its letter), spaced-out letters joined up, and any base64 run
decoded — and flags it when one of a few structural signals fires in any view:

- markup and role markers ("system:", "[INST]", "<|im_start|>", "###", forged <source> tags, links);
- an instruction to ignore/forget/override earlier instructions, in imperative position;
- second-person address ("you", "vous", "usted", "du"-forms, "你", "вы", ...) outside a quoted title;
- a request ("please", "bitte", "por favor", "请", "пожалуйста", "ください");
- a directive verb (say, tell, reply, cite, describe, ...) in imperative position: at the start of
  a sentence that is not a title, or after a clause break together with a cue that it addresses
  someone (a reader/model noun, "the user", "this paper", "when summarising", a quote, ...);
- an addressee: a vocative ("Dear reader", "Note to language models:", "Language models, treat
  ..."), or a processor of *this* text ("models reading this abstract", "die diese Arbeit lesen");
- meta-talk about outputs of this text ("any summary of this paper", "questions about this work")
  or a reader/model noun with a directive modal and a speech verb ("summarisers should report that").

These are classes of sentence shape with a small general lexicon per language (English, German,
French, Spanish, Chinese, Russian), not a list of known attacks. Research statements about models,
prompts and summaries ("we instruct the model to ...", "models ignore instructions ...") have a
subject before the verb and are not flagged. The rates on tests/data/injection are in
docs/grounding.md (`pytest tests/test_injection_disguised.py -q -s` prints them).
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from functools import lru_cache

from rag.text import split_sentences

__all__ = ["is_instruction", "normalize", "skeleton"]

# --------------------------------------------------------------------------------- normalising
# Greek and Cyrillic letters that render like Latin ones (after NFKC, which already folds fullwidth
# and mathematical alphanumerics). Small on purpose: the letters an attacker can swap into an
# English word without a reader noticing.
_CONFUSABLE = str.maketrans(
    {
        # Cyrillic
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
        "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d",
        "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ɡ": "g",
        "А": "A", "В": "B", "Е": "E", "Ё": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
        "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "І": "I", "Ї": "I", "Ј": "J", "Ԛ": "Q",
        "Ԝ": "W", "Һ": "H", "Ӏ": "I",
        # Greek
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
        "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ω": "w",
        "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
        "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    }
)  # fmt: skip
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else ""


def normalize(text: str) -> str:
    """The text as a check should read it: NFKC (fullwidth and styled letters to plain ones), Unicode
    format characters (zero-width spaces and joiners, soft hyphens, bidi controls, BOM, tags)
    removed, and Greek/Cyrillic look-alikes mapped to Latin in a word that mixes them with Latin
    letters — or in any word of a text that is mostly Latin. Real Greek or Russian text is kept.
    For checking, not for display (NFKC also turns "m²" into "m2")."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = re.sub(r"[\ufe00-\ufe0f]", "", text)  # variation selectors (Mn) hide inside words too
    words = _WORD.findall(text)
    if not words:
        return text
    latin = sum(1 for w in words if all(_script(c) == "LATIN" for c in w))
    mostly_latin = latin > len(words) / 2

    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        scripts = {_script(c) for c in word}
        mixed = len(scripts) > 1 and "LATIN" in scripts
        # A lone Greek letter in Latin text is notation (the α and β coefficients), not a disguise.
        if mixed or (mostly_latin and len(word) > 1 and scripts <= {"GREEK", "CYRILLIC"}):
            mapped = word.translate(_CONFUSABLE)
            # A whole Greek/Cyrillic word in Latin text is only a disguise if every letter maps.
            if len(scripts) > 1 or all(_script(c) == "LATIN" for c in mapped):
                return mapped
        return word

    return _WORD.sub(fix, text)


def skeleton(text: str) -> str:
    """Lower-case Latin skeleton of normalised text: every look-alike mapped, and digits inside
    letter-and-digit words read as the letters they imitate ("1gn0r3" -> "ignore")."""
    text = text.translate(_CONFUSABLE).lower()
    return re.sub(
        r"\b(?=[\w@$]*[a-z])(?=[\w@$]*[0-9@$])[\w@$]+\b",
        lambda m: m.group(0).translate(_LEET),
        text,
    )


# -------------------------------------------------------------------------------- alternate views
_SPACED = re.compile(r"(?<![\w])(?:[^\W_][ \-._*·]{1,4}){3,}[^\W_](?![\w])")
_B64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])")


def _despaced(text: str) -> str:
    """'I g n o r e   a l l' -> 'Ignore all': letters spaced out to dodge word matching, joined."""

    def join(match: re.Match[str]) -> str:
        groups = re.split(r"\s{2,}|[ \-._*·]{2,}", match.group(0))
        return " ".join(re.sub(r"[ \-._*·]", "", g) for g in groups)

    return _SPACED.sub(join, text)


def _decoded(text: str) -> list[str]:
    """Prose hidden in base64 runs (an abstract never encodes sentences; hashes decode to noise)."""
    found = []
    for match in _B64.finditer(text):
        token = match.group(0)
        if not (re.search(r"[a-z]", token) and re.search(r"[A-Z0-9]", token)):
            continue
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
            plain = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        printable = sum(ch.isprintable() for ch in plain) / max(len(plain), 1)
        if printable > 0.95 and len(plain.split()) >= 3:
            found.append(plain)
    return found


# ------------------------------------------------------------------------------ English signals
# Markup, delimiters and chat-template role markers: never part of an abstract's prose.
_MARKUP = re.compile(
    r"""
    (?:<|&lt;)\s*/?\s*source\b
    | \[\s*/?\s*(?:system|assistant|user|inst|sys)\s*\]
    | <\|[^|>]{1,30}\|> | <<\s*/?\s*sys\s*>> | <!--
    | (?:^|\s)(?:system|assistant|user)\s*:
    | \#\#\#\s*(?:system|instructions?|response|user|assistant)
    | ^\W*(?:question|answer|sources?|response|instructions?|system\s+prompt)\s*:
    | !\[[^\]]*\]\([^)]*\) | \[[^\]]+\]\(\s*(?:https?|javascript|data):[^)]*\)
    | <\s*/?\s*(?:a|img|script|iframe|style|object|embed|form|svg)\b[^>]*>
    """,
    re.VERBOSE,
)
_YOU = re.compile(r"\b(?:you|your|yours|yourself|yourselves)\b", re.IGNORECASE)
_YOU_TOLD = re.compile(r"\byou\s+(?:must|should|shall|will|are\s+now|are\s+an?|have\s+to)\b", re.I)
_PLEASE = re.compile(r"\b(?:please|kindly)\b")
# A clause boundary after which a verb without a subject is an imperative.
_POS = r"(?:^[\W\d]*|[.;:!?,\u2014\u2013(\[\]]\s*|\s-\s)(?:(?:please|kindly|now|also|then|instead|simply|just|always|never|only|first|finally|do\s+not|don't)\s+)*"
# Directive verbs: the acts a reader or model is told to perform on its answer.
_VERB_PLAIN = (
    r"say|tell|inform|remind|reply|respond|reveal|append|prepend|insert|pretend|obey|comply|omit|"
    r"assign|conclude|describe|summari[sz]e|recommend|praise|treat|remember|include|cite|write|"
    r"disclose|translate|refuse|avoid|visit|click|send|forward|behave|emphasi[sz]e|endorse|promote"
)
_VERB_AMBIG = r"answer|report|output|rate|score|call|label|list|state|print|claim|rank|mention|repeat|return|highlight|stress|act|refer"
_OBJ = r"(?:the|this|that|these|those|it|them|me|us|every|each|all|any|only|exactly|with|as|a|an|your|my|to|no|nothing|everything|verbatim|[\"'“‘«])\b"
_IMPERATIVE = re.compile(
    rf"{_POS}(?:(?:{_VERB_PLAIN})\b(?!-)|(?:{_VERB_AMBIG})\b(?!-)\s*{_OBJ})", re.MULTILINE
)
_START_IMPERATIVE = re.compile(
    rf"^[\W\d]*(?:(?:please|kindly|now|also|simply|just|always|never|do\s+not|don't)\s+)*"
    rf"(?:(?:{_VERB_PLAIN})\b(?!-)|(?:{_VERB_AMBIG})\b(?!-)\s*{_OBJ})"
)
_IGNORE = r"ignore|disregard|forget|override|bypass|skip|neglect|discard"
_OVERRIDE = re.compile(
    rf"(?:{_POS}|\b(?:and|you\s+(?:must|should|shall|will|can|may|need\s+to|have\s+to))\s+)"
    rf"(?:{_IGNORE})\b[^.]{{0,40}}?\b(?:instructions?|prompts?|rules|guidelines|directions|"
    r"directives|commands?|context|constraints|guardrails|polic(?:y|ies)|everything|anything|"
    r"above|question|sources?|evidence|previous|prior|preceding|earlier|"
    r"anteriores|previas|pr[ée]c[ée]dentes|vorherigen|bisherigen|obigen)\b"
)
_ADDRESSEE = (
    r"(?:ai|a\.i\.|llms?|language\s+models?|models?|assistants?|chatbots?|bots?|agents?|"
    r"summari[sz]ers?|summari[sz]ing\s+(?:models?|systems?|tools?)|readers?|reviewers?|"
    r"crawlers?|scrapers?|gpt|chatgpt|claude|gemini|copilot|systems?|tools?|neural\s+networks?)"
)
# The same, without the nouns every abstract uses for its own subject ("model", "system"): a cue.
_ADDRESSEE_CUE = (
    r"(?:ai|a\.i\.|llms?|language\s+models?|assistants?|chatbots?|bots?|summari[sz]ers?|"
    r"summari[sz]ing\s+(?:models?|systems?|tools?)|readers?|reviewers?|crawlers?|scrapers?|gpt|"
    r"chatgpt|claude|gemini|copilot)"
)
_DOC = (
    r"(?:this|the\s+present|the\s+current|the\s+following|these)\s+(?:abstract|paper|work|article|"
    r"study|document|text|page|passage|submission|manuscript|note|preprint|publication|sentences?|"
    r"message|content|lines?|words?|instructions?)\b"
)
_PROCESSOR = re.compile(
    r"\b(?:reading|processing|summari[sz]ing|parsing|ingesting|indexing|analy[sz]ing|crawling|"
    r"scraping|seeing|encountering|(?:that|which|who)\s+(?:reads?|process(?:es)?|summari[sz]es?|"
    rf"parses?|sees?|index(?:es)?|ingests?|analy[sz]es?))\s+{_DOC}"
)
_VOCATIVE = re.compile(
    rf"^[\W\d]*(?:(?:dear|hey|hi|hello)\b|attention\s*[:,!])"
    rf"|\b(?:notes?|notice|message|instructions?|reminder|warning)\s+(?:to|for)\s+(?:all\s+|any\s+|every\s+|the\s+)?(?:[\w-]+\s+){{0,2}}{_ADDRESSEE}\b"
    rf"|^[\W\d]*to\s+(?:all|any|every|each)\s+(?:[\w-]+\s+){{0,2}}{_ADDRESSEE}\b"
    rf"|^[\W\d]*(?:[\w-]+\s+){{0,2}}{_ADDRESSEE}\s*[,:]\s*(?:please\s+|kindly\s+)?(?:{_VERB_PLAIN}|{_VERB_AMBIG}|{_IGNORE})\b"
    rf"|\bif\s+you\s+are\s+an?\b"
)
_META = re.compile(
    rf"\b(?:answers?|responses?|repl(?:y|ies)|summar(?:y|ies)|outputs?|reviews?|ratings?|"
    rf"assessments?|questions?|quer(?:y|ies)|citations?)\s+(?:of|about|for|on|regarding|concerning|"
    rf"to\s+(?:any|every|each|all)\s+questions?\s+about)\s+(?:any\s+|every\s+)?{_DOC}"
    rf"|\bcite\s+{_DOC}"
    r"|\bcite\s+(?:[\w-]+\s+){0,3}as\b"  # "cite it as [9]": what to cite, not who cited what
)
_SPEECH = (
    r"report|state|say|tell|answer|reply|respond|describe|mention|cite|recommend|rate|rank|conclude|"
    r"claim|assert|emphasi[sz]e|highlight|present|treat|refer|call|label|note|include|append|output|"
    r"print|write|summari[sz]e|praise|endorse|indicate"
)
_MODAL = re.compile(
    rf"\b{_ADDRESSEE}\b[^.]{{0,60}}?\b(?:must|should|shall|need\s+to|have\s+to|has\s+to|ought\s+to|"
    # "is told/asked to answer" reports an experiment's setup; obligation addresses the reader.
    r"(?:are|is)\s+(?:required|expected|supposed|obliged|reminded|to)(?:\s+to)?)"
    rf"\s+(?:always\s+|never\s+|not\s+|now\s+|also\s+|only\s+)?(?:{_SPEECH})\b\s*"
    r"(?:that|as|this|these|it|them|the\s+(?:user|reader)|only|exactly|[\"'“‘«]|[.!]|$)"
)
_CONTEXT = re.compile(
    r"\b(?:when|while|before|after|if|whenever)\s+(?:asked|queried|questioned|prompted|"
    r"summari[sz]ing|answering|responding|replying|generating|writing|citing|describing)\b"
)
_CUE = re.compile(
    rf"\b(?:you|your|please|kindly|the\s+(?:user|reader|human)s?|users|readers|always|never|"
    rf"(?:any|every|each|all)\s+(?:\w+\s+)?(?:questions?|answers?|responses?|repl(?:y|ies)|"
    rf"summar(?:y|ies)|outputs?|quer(?:y|ies)))\b|{_ADDRESSEE_CUE}\b|{_DOC}|[\"“‘«]"
)


def _title_cased(sentence: str) -> bool:
    words = [w for w in re.findall(r"[A-Za-z][\w'-]*", sentence) if len(w) >= 4]
    if not words or sentence.upper() == sentence:
        return False
    return sum(w[0].isupper() for w in words) / len(words) >= 0.6


def _second_person_en(sentence: str) -> bool:
    """'you' addressing the reader — not 'All You Need' or 'You Only Look Once' in a quoted title."""
    if sentence.upper() == sentence:
        return bool(_YOU.search(sentence))
    if _title_cased(sentence):  # a title ("Help from your own Past"): only a "you" that is told
        return bool(_YOU_TOLD.search(sentence))
    for match in _YOU.finditer(sentence):
        word = match.group(0)
        before = sentence[: match.start()].split()[-1:] or [""]
        after = sentence[match.end() :].split()[:1] or [""]
        in_title = word[0].isupper() and any(
            w[:1].isupper() and w[1:].islower() for w in (before[0], after[0]) if w[:1].isalpha()
        )
        if not in_title:
            return True
    return False


def _english(view: str, original: str) -> bool:
    low = view.lower()
    if _MARKUP.search(low) or _OVERRIDE.search(low) or _PROCESSOR.search(low):
        return True
    if _VOCATIVE.search(low) or _META.search(low) or _MODAL.search(low) or _PLEASE.search(low):
        return True
    if _second_person_en(original):
        return True
    if _START_IMPERATIVE.search(low) and not _title_cased(original):
        return True
    cues = bool(_CUE.search(low) or _CONTEXT.search(low))
    return cues and any(m.start() > 0 for m in _IMPERATIVE.finditer(low))


# ----------------------------------------------------------------------------- other languages
# Per language: second-person forms, requests, imperative directive verbs (also as the target of an
# ignore-instruction), and addressee/processor phrases. Only forms that a research sentence in
# that language does not use: a scientific abstract is written in the first person plural or
# impersonally.
_OTHER = [
    re.compile(p, re.IGNORECASE)
    for p in (
        # German ("Sie" is handled case-sensitively below)
        r"\b(?:dich|dir|dein\w*|euch|euer|eure\w*)\b|\bbitte\b"
        r"|(?:^|[,;:]\s*)(?:ignoriere|vergiss|vergesst|missachte|antworte|sage|sag|schreibe|erwähne|"
        r"nenne|beschreibe|fasse|zitiere|bewerte|empfiehl|behaupte)\b"
        r"|\b(?:ignorieren|vergessen|antworten|sagen|schreiben|erwähnen|nennen|beschreiben|fassen|"
        r"zitieren|bewerten|empfehlen)\s+sie\b"
        r"|\b(?:hinweis|nachricht|anweisung(?:en)?|notiz)\s+(?:für|an)\s+(?:alle\s+|die\s+)?"
        r"(?:ki|künstliche|sprachmodell|assistent|chatbot|leser|zusammenfass)",
        # French
        r"\b(?:vous|votre|vos|tu|toi|ta|tes)\b|\bt'|\bs'il\s+(?:te|vous)\s+pla[iî]t\b|\bveuillez\b"
        r"|(?:^|[,;:]\s*)(?:ignorez|ignore|oubliez|oublie|répondez|réponds|dites|indiquez|écrivez|"
        r"écris|mentionnez|citez|affirmez|déclarez|recommandez|décrivez|résumez|traitez)\b"
        r"|\b(?:note|message|avis|consignes?|instructions?)\s+(?:aux?|pour\s+les?)\s+"
        r"(?:ia|intelligences?|modèles?|assistants?|chatbots?|agents?|lecteurs?)",
        # Spanish
        r"\b(?:tú|tus|usted(?:es)?|vosotros|vuestr[oa]s?|eres|estás|contigo)\b|\bpor\s+favor\b"
        r"|(?:^|[,;:]\s*)(?:ignora|ignore|ignoren|olvida|olvide|omite|responde|responda|contesta|"
        r"diga|dile|escribe|escriba|menciona|cita|afirma|indica|recomienda|describe|resume)\b"
        r"|\b(?:que|los\s+que|las\s+que)\s+(?:lean|procesen|resuman|analicen|lea|procese|resuma)\s+"
        r"(?:este|esta|estos|el\s+presente)\s+(?:texto|artículo|resumen|documento|página|trabajo)",
        # Chinese
        r"[你您]|(?<![邀申聘提])请"
        r"|(?:^|[，,；;：:])\s*(?:忽略|无视|忽视|忘记|不要理会|不理会)"
        r"|(?:阅读|处理|总结|概括|分析)(?:本文|这篇|此文|本摘要|该摘要|这段)\S{0,6}的(?:模型|助手|系统|AI|人工智能)"
        r"|(?:给|致)(?:所有)?(?:AI|人工智能|助手|语言模型|大模型|聊天机器人)",
        # Russian
        r"\b(?:ты|тебя|тебе|тобой|твой|твоя|твоё|твои|твоего|вы|вас|вам|вами|ваш|ваша|ваше|ваши|"
        r"вашего|пожалуйста)\b"
        r"|(?:^|[,;:]\s*)(?:игнорируй|забудь|ответь|отвечай|скажи|сообщи|напиши|укажи|упомяни|"
        r"процитируй|порекомендуй|опиши|не\s+обращай)(?:те)?\b"
        r"|(?:читающ|обрабатывающ|пересказывающ|резюмирующ|анализирующ)\w*\s+(?:эт|данн)\w*\s+"
        r"(?:текст|стать|аннотаци|документ|страниц|резюме)",
        # Japanese (also read by the Chinese pattern above for shared characters)
        r"ください|下さい|しなさい",
    )
]
_SIE = re.compile(r"(?<=\w[\s,])Sie\b(?!\s+(?:ist|hat|wird|war|kann|soll|muss|zeigt|liefert)\b)")


def _other(view: str) -> bool:
    if sum(c.isupper() for c in view) < sum(c.islower() for c in view):
        # Unless the sentence is shouted, acronyms (VOS, TU, ВОЗ) are not pronouns or verbs.
        view = _WORD.sub(
            lambda m: " " if len(m.group(0)) > 1 and m.group(0).isupper() else m.group(0), view
        )
    return bool(_SIE.search(view)) or any(p.search(view) for p in _OTHER)


# ------------------------------------------------------------------------------------- verdict
@lru_cache(maxsize=8192)  # pure; the same abstracts come back for question after question
def is_instruction(sentence: str) -> bool:
    """True for a sentence addressed to the reader or model (an injection), however disguised;
    False for a statement about research, including research about models, prompts and summaries."""
    text = normalize(sentence)
    pieces = split_sentences(text)
    if (
        len(pieces) > 1
    ):  # a disguise (fullwidth capitals, a zero-width "space") hid a sentence break
        return any(is_instruction(piece) for piece in pieces)
    if _decoded(text):
        return True  # sentences hidden in base64 are a disguise whatever they say
    # (view, the same view with its case kept): case tells a quoted Title from an address.
    views = [(text, text), (skeleton(text), text)]
    spaced = _despaced(text)
    if spaced != text:
        views += [(spaced, spaced), (skeleton(spaced), spaced)]
    return any(_english(view, cased) for view, cased in views) or _other(text)
