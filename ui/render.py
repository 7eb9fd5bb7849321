"""HTML for the chat UI: answers with clickable [n] citations, the sources panel, ingest reports.

Everything that comes from a paper, a model or a user is untrusted text. It goes through `esc`
(HTML-escaped, plus the characters Gradio's HTML templates and Markdown treat specially) before
any markup of ours is wrapped around it, so an abstract containing `<script>` shows as literal
text. Only the tags built here (`<a class="rag-cite">`, `<mark>`, `<span>`, `<div>`, `<br>`) are
HTML.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from rag.prompts import CANNOT_ANSWER
from rag.text import cite, split_sentences
from rag.types import Answer, IngestReport, Sentence, Source

_CITE = re.compile(r"\[(\d+)\]")
# Characters that are harmless in HTML but meaningful to Gradio's HTML templates (`${...}`,
# Handlebars `{{...}}`) or to Markdown/LaTeX in the chat: shown literally, never interpreted.
_EXTRA = str.maketrans(
    {"{": "&#123;", "}": "&#125;", "$": "&#36;", "`": "&#96;", "*": "&#42;", "_": "&#95;"}
)


def esc(text: object) -> str:
    """Untrusted text -> HTML that displays exactly that text."""
    return html.escape(str(text), quote=True).translate(_EXTRA)


def source_anchor(turn: int, number: int) -> str:
    """DOM id of source `number` of answer `turn` in the sources panel."""
    return f"rag-t{turn}-s{number}"


def _cite_links(escaped: str, turn: int, titles: Mapping[int, str] | None) -> str:
    """Each [n] as a link to source card n of answer `turn`: only the numbers in `titles`, each
    titled with its paper; `titles=None` (a streamed answer, sources not sent yet): every [n],
    untitled."""

    def link(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if titles is not None and n not in titles:
            return match.group(0)
        title = f' title="[{n}] {esc(titles[n])}"' if titles is not None else ""
        return (
            f'<a class="rag-cite" href="#{source_anchor(turn, n)}" data-turn="{turn}" '
            f'data-source="{n}"{title}>[{n}]</a>'
        )

    return _CITE.sub(link, escaped)


def _sentence_html(sentence: Sentence, turn: int, titles: Mapping[int, str]) -> str:
    text = _cite_links(esc(cite(sentence.text, sentence.citations)), turn, titles)
    if sentence.supported:
        hint = (
            f"Supported by [{sentence.support_source}]: {sentence.support}"
            if sentence.support
            else ""
        )
        return f'<span class="rag-sent" title="{esc(hint)}">{text}</span>'
    return (
        '<span class="rag-flag" title="No cited source supports this sentence">'
        f'<span class="rag-flag-tag">unverified</span> {text}</span>'
    )


def answer_html(answer: Answer, turn: int) -> str:
    """The assistant's chat message: the verified answer, its notices and a status line."""
    titles = {s.number: s.title for s in answer.sources}
    parts: list[str] = []
    if answer.notice:
        parts.append(f'<div class="rag-notice">⚠ {esc(answer.notice)}</div>')
    if answer.abstained:
        best = max((s.score for s in answer.sources), default=None)
        why = (
            f"None of the {len(answer.sources)} closest abstracts supports an answer "
            f"(best match {best:.2f})."
            if best is not None
            else "No paper in the corpus matched the question."
        )
        parts.append(
            f'<div class="rag-abstain"><b>{esc(CANNOT_ANSWER)}</b>'
            f'<div class="rag-why">{esc(why)} Try rephrasing, or widen the filters.</div></div>'
        )
        flagged = [s for s in answer.sentences if not s.supported]
        if flagged:
            parts.append(
                '<div class="rag-answer">'
                + " ".join(_sentence_html(s, turn, titles) for s in flagged)
                + "</div>"
            )
    elif answer.sentences:
        parts.append(
            '<div class="rag-answer">'
            + " ".join(_sentence_html(s, turn, titles) for s in answer.sentences)
            + "</div>"
        )
    else:
        parts.append(f'<div class="rag-answer">{_cite_links(esc(answer.text), turn, titles)}</div>')
    parts.append(status_html(answer))
    # One line, no blank lines: Markdown passes an HTML block through untouched.
    return '<div class="rag-msg">' + "".join(parts) + "</div>"


def status_html(answer: Answer) -> str:
    chips = [f'<span class="rag-badge" title="Answer backend">{esc(answer.backend)}</span>']
    for key, value in answer.filters.items():
        chips.append(f'<span class="rag-chip">{esc(key)}: {esc(value)}</span>')
    cited = sorted({n for s in answer.sentences if s.supported for n in s.citations})
    if cited:
        chips.append(f'<span class="rag-chip">cites {", ".join(f"[{n}]" for n in cited)}</span>')
    if "total" in answer.timings:
        chips.append(f'<span class="rag-chip">{answer.timings["total"]:.1f} s</span>')
    line = '<div class="rag-status">' + "".join(chips) + "</div>"
    if answer.standalone_question:
        line += f'<div class="rag-why">Read as: {esc(answer.standalone_question)}</div>'
    return line


def streaming_html(text: str, turn: int) -> str:
    """The answer while it streams in, until `answer_html` and the sources panel replace it.

    `text` is what `Assistant.ask_stream` yielded so far: the rendering of each sentence the
    verifier has accepted, with its [n] (rag/pipeline.py; with RAG_UNSUPPORTED=flag also the
    sentences it flags, marked as such once the final answer replaces this). So it is shown as an
    answer is: normal styling, each [n] a link to its source card (the card exists once the final
    answer fills the panel; a click waits a moment for it), and a chip that only says the answer
    is still coming. A blank line (before the fallback answer when the model failed) becomes a
    line break, so the message stays one HTML block for Markdown.
    """
    body = esc(text.strip())
    if body:
        body = re.sub(r"\s*\n\s*\n\s*", "<br><br>", body).replace("\n", " ")
        shown = f'<div class="rag-answer">{_cite_links(body, turn, None)}</div>'
    else:
        shown = '<div class="rag-why">Searching the papers…</div>'
    return (
        f'<div class="rag-msg rag-streaming">{shown}'
        '<div class="rag-stream-status"><span class="rag-chip">answering…</span></div></div>'
    )


def error_html(message: str) -> str:
    return f'<div class="rag-msg"><div class="rag-error">⚠ {esc(message)}</div></div>'


def highlight(text: str, passages: list[str]) -> str:
    """Escape `text`, wrapping each occurrence of a supporting passage (or its sentences) in <mark>."""
    spans: list[tuple[int, int]] = []
    for passage in passages:
        for piece in [passage, *split_sentences(passage)]:
            words = piece.split()
            if len(words) < 3:
                continue
            match = re.search(r"\s+".join(re.escape(w) for w in words), text)
            if match:
                spans.append(match.span())
                break
    out, pos = [], 0
    for start, end in sorted(spans):
        if start < pos:
            start = pos
        if start >= end:
            continue
        out.append(esc(text[pos:start]))
        out.append(f"<mark>{esc(text[start:end])}</mark>")
        pos = end
    out.append(esc(text[pos:]))
    return "".join(out)


def _authors(authors: list[str]) -> str:
    if not authors:
        return ""
    shown = ", ".join(authors[:3])
    return shown + (f" et al. ({len(authors)} authors)" if len(authors) > 3 else "")


def sources_html(answer: Answer | None, turn: int) -> str:
    """The sources panel for one answer: every source, cited ones with their support marked."""
    if answer is None:
        return (
            '<div class="rag-sources rag-empty">Sources appear here with each answer. Click a '
            "[n] in an answer to jump to its source; click an earlier answer to see its sources."
            "</div>"
        )
    if not answer.sources:
        return '<div class="rag-sources rag-empty">No paper matched this question.</div>'
    support: dict[int, list[str]] = {}
    used_by: dict[int, list[int]] = {}
    for i, sentence in enumerate(answer.sentences, start=1):
        if sentence.supported and sentence.support and sentence.support_source is not None:
            support.setdefault(sentence.support_source, []).append(sentence.support)
        for n in sentence.citations:
            used_by.setdefault(n, []).append(i)
    cards = []
    for src in answer.sources:
        cards.append(_source_card(src, turn, support.get(src.number, []), used_by.get(src.number)))
    head = f"Sources for “{esc(answer.question)}”"
    return (
        f'<div class="rag-sources"><div class="rag-sources-head">{head}</div>'
        + "".join(cards)
        + "</div>"
    )


def _link_label(src: Source) -> str:
    """arXiv:1706.03762, or doi:10.1023/... when the link is the DOI."""
    if src.doi and "doi.org" in (src.url or ""):
        return f"doi:{src.doi.split()[0]}"
    return f"arXiv:{src.paper_id}"


def _source_card(src: Source, turn: int, passages: list[str], used_by: list[int] | None) -> str:
    meta = [
        f'<span class="rag-score" title="Cosine similarity to the question">match {src.score:.2f}</span>'
    ]
    if src.published:
        meta.append(f"<span>{src.published.isoformat()}</span>")
    if src.authors:
        meta.append(f"<span>{esc(_authors(src.authors))}</span>")
    if used_by:
        meta.append(
            '<span class="rag-used">cited by sentence '
            + ", ".join(str(i) for i in used_by)
            + "</span>"
        )
    body = src.text or src.snippet
    if passages:
        abstract = f'<div class="rag-abstract">{highlight(body, passages)}</div>'
    else:
        abstract = (
            '<details class="rag-details"><summary>Best-matching passage</summary>'
            f'<div class="rag-abstract">{esc(src.snippet or body)}</div></details>'
        )
    if src.url:  # the paper itself: its arXiv page, or its DOI
        meta.append(
            f'<a class="rag-link" href="{esc(src.url)}" target="_blank" rel="noopener noreferrer">'
            f"{esc(_link_label(src))}</a>"
        )
    if src.categories:
        meta.append(f'<span class="rag-cats">{esc(" ".join(src.categories))}</span>')
    cls = "rag-src rag-cited" if used_by else "rag-src"
    return (
        f'<div class="{cls}" id="{source_anchor(turn, src.number)}">'
        f'<div class="rag-src-title"><span class="rag-num">{src.number}</span>{esc(src.title)}</div>'
        f'<div class="rag-meta">{" · ".join(meta)}</div>{abstract}</div>'
    )


# What a report may echo of an uploaded file: each failure's reason keeps at most one short,
# escaped excerpt per quoted piece, the reason itself is bounded, and only the first few failures
# of a file are listed. A file that is not a corpus (say a log or a config file) then shows no
# more than a few short, escaped fragments, however many lines of it failed.
EXCERPT_CHARS = 80
REASON_CHARS = 240
FAILURES_PER_FILE = 5
FAILURES_SHOWN = 20
# A quoted piece of a message: '...' ending at a quote that is followed by a space, punctuation
# or the end (so "'Don't panic' has no abstract" is one piece).
_QUOTED = re.compile(r"'(.*?)'(?=[\s;:,.)]|$)", re.S)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """At most `limit` characters of untrusted `text` as a Python string literal (control,
    invisible and non-printable characters escaped), with '…' after it when it was cut."""
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def short_name(name: str, limit: int = EXCERPT_CHARS) -> str:
    """A file name fit to show: non-printable characters escaped, at most `limit` of them."""
    text = _printable(name)
    return text if len(text) <= limit else text[:limit] + "…"


def safe_reason(reason: str, paths: Mapping[str, str] | None = None) -> str:
    """A failure reason or error message fit to show: server paths replaced by the names the user
    gave (`paths`: path -> name), quoted pieces cut to short escaped excerpts, anything else
    non-printable escaped, and the whole bounded to REASON_CHARS."""
    for path, name in (paths or {}).items():
        reason = reason.replace(path, name)
    text = _QUOTED.sub(lambda m: excerpt(m.group(1)), reason)
    text = _printable(text)
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS] + "…"


def report_html(report: IngestReport, names: Mapping[str, str] | None = None) -> str:
    """An ingest report, with each failure as `file:line: reason` (file shown by its upload name).

    Lists at most FAILURES_PER_FILE failures of each file and FAILURES_SHOWN in all, each reason
    through `safe_reason`; the counts above always cover every failure."""
    names = names or {}
    counts = [
        ("added", report.added),
        ("updated", report.updated),
        ("unchanged", report.skipped),
        ("duplicates", report.duplicates),
        ("failed", len(report.failed)),
    ]
    cells = "".join(
        f'<div class="rag-count{" rag-bad" if k == "failed" and v else ""}"><b>{v}</b>{k}</div>'
        for k, v in counts
    )
    title = "Ingested" if report.ok else "Ingested with problems"
    out = [
        f'<div class="rag-report"><div class="rag-report-head">{title} in {report.seconds:.1f} s'
        f" ({report.chunk_counts})</div>",
        f'<div class="rag-counts">{cells}</div>',
    ]
    if report.replaced:  # a known id now holds another paper: say so, both titles
        shown = report.replaced[:FAILURES_SHOWN]
        rows = "".join(f"<li>{esc(safe_reason(str(r)))}</li>" for r in shown)
        more = len(report.replaced) - len(shown)
        out.append(
            f'<div class="rag-replaced">Replaced ({len(report.replaced)}): <ul>{rows}</ul>'
            + (f"<div>… and {more} more</div>" if more > 0 else "")
            + "</div>"
        )
    if report.failed:
        items, per_file, hidden = [], Counter[str](), Counter[str]()
        for failure in report.failed:
            file = names.get(failure.file) or Path(failure.file).name
            if per_file[file] >= FAILURES_PER_FILE or sum(per_file.values()) >= FAILURES_SHOWN:
                hidden[file] += 1
                continue
            per_file[file] += 1
            where = f"{file}:{failure.line}" if failure.line else file
            reason = safe_reason(failure.reason, names)
            items.append(
                f"<li><code>{esc(short_name(where, 2 * EXCERPT_CHARS))}</code> {esc(reason)}</li>"
            )
        for file, more in hidden.items():
            items.append(f"<li>… and {more} more in <code>{esc(short_name(file))}</code></li>")
        out.append(f'<ul class="rag-failures">{"".join(items)}</ul>')
    out.append("</div>")
    return "".join(out)


def report_error_html(message: str) -> str:
    return f'<div class="rag-report"><div class="rag-error">⚠ {esc(message)}</div></div>'
