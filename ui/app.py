"""The Gradio chat UI: a thin front-end over `rag.Assistant`.

    question ─► Assistant.ask_stream ─► verified sentences, streamed ─► Answer ─► chat + sources

Layout: a sidebar with search settings, example questions and corpus upload; the chat in the
middle; the sources panel on the right (number, title, date, score and the abstract with the
sentence that supports the answer marked). Every [n] in an answer links to its source card.

The answer appears sentence by sentence as the verifier judges each one (rag/pipeline.py streams
only the sentences it keeps), styled as an answer, with an "answering…" chip; the final `Answer`
then replaces it with its full rendering (support hints, flags, status line) and fills the
sources panel.

Two histories are kept per browser session: the Chatbot's (HTML for display) and a plain one
(`{"role", "content", "sources"}`) that goes back to the Assistant so follow-ups work.
`RagError`s become inline notices; anything else is logged with its traceback and shown as a
short generic message. Mount it with `rag_ui.server.build_app` (`rag serve`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from rag import Answer, Assistant, ConfigError, Filters, RagError
from rag.arxiv import resolve

from .access import ingest_policy, only_uploaded, policy_note, refusal, upload_folder
from .render import (
    answer_html,
    error_html,
    report_error_html,
    report_html,
    safe_reason,
    short_name,
    sources_html,
    streaming_html,
)

log = logging.getLogger(__name__)
# Every gr.Blocks phones api.gradio.app (version check, analytics) unless analytics are off; rag
# stays offline (tests/test_offline.py). GRADIO_ANALYTICS_ENABLED=True opts back in.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

UPLOAD_TYPES = [".txt", ".jsonl", ".json", ".csv"]
EXAMPLES = [
    "What range of sequence lengths does the Long Range Arena benchmark cover?",
    "Which training-free metric predicts the trained performance of an RNN architecture?",
    "How does DeiT-LT distill knowledge for tail classes?",
    "What compression ratio does BCT achieve without retraining?",
    "What does FuseGPT do with pruned transformer blocks?",
]
ANY_YEAR = "any"
YEARS = [ANY_YEAR, *(str(y) for y in range(dt.date.today().year, 1989, -1))]
GENERIC_ERROR = "Something went wrong on the server; the details are in its log. Please try again."


def max_upload_bytes(assistant: Assistant) -> int:
    """RAG_MAX_UPLOAD_MB in bytes (MiB, as Gradio counts), for Gradio's own upload limit too."""
    return int(assistant.settings.max_upload_mb * 1024 * 1024)


def _filters(
    year_from: Any, year_to: Any, author: str | None, category: str | None = None
) -> Filters | None:
    def year(value: Any, label: str) -> int | None:
        if value in (None, "", ANY_YEAR, 0):
            return None
        try:
            number = int(float(value))
        except (TypeError, ValueError):
            raise ConfigError(f"{label} must be a year such as 2021") from None
        if not 1900 <= number <= 2100:
            raise ConfigError(f"{label} {number} is not a plausible year; use e.g. 2021")
        return number

    start, end = year(year_from, "'From year'"), year(year_to, "'To year'")
    if start is not None and end is not None and start > end:
        raise ConfigError(f"'From year' {start} is after 'To year' {end}; swap them")
    filters = Filters(
        year_from=start,
        year_to=end,
        author=(author or "").strip() or None,
        categories=resolve([category]) if category and category.strip() else [],
    )
    return None if filters.is_empty() else filters


def _cited_titles(answer: Answer) -> list[str]:
    numbers = [n for s in answer.sentences if s.supported for n in s.citations]
    by_number = {s.number: s.title for s in answer.sources}
    ordered = list(dict.fromkeys(n for n in numbers if n in by_number))
    return [by_number[n] for n in ordered]


def build_ui(assistant: Assistant, *, shared: bool = False) -> gr.Blocks:
    """The chat UI over `assistant`. Mount with `rag_ui.server.build_app`, or `.launch(**ui_options())`.

    `shared`: the page will be reachable through a public share link (`rag serve --share`), which
    counts as a non-loopback host for RAG_UI_INGEST=auto (ui/access.py)."""
    settings = assistant.settings
    max_mb = settings.max_upload_mb
    policy = ingest_policy(settings, shared=shared)

    def corpus_line() -> str:
        try:
            info = assistant.info()
        except RagError as exc:
            return f"⚠ {exc}"
        except Exception:
            log.exception("reading corpus info failed")
            return "⚠ the corpus could not be read; see the server log"
        if not info["papers"]:
            return "The corpus is empty: add papers below, or run `rag ingest`."
        return (
            f"**{info['papers']}** papers · {info['chunks']} chunks · answers by "
            f"**{info['backend']}** · {info['retrieval']} retrieval"
        )

    def respond(
        message: str,
        chat: list[dict[str, Any]] | None,
        history: list[dict[str, Any]] | None,
        panels: dict[int, str] | None,
        top_k: float,
        year_from: Any,
        year_to: Any,
        author: str,
        category: str = "",
    ) -> Iterator[tuple[Any, ...]]:
        chat = list(chat or [])
        history = list(history or [])
        panels = dict(panels or {})
        message = (message or "").strip()
        if not message:
            gr.Warning("Type a question about the papers first.")
            yield gr.skip(), chat, gr.skip(), history, panels
            return
        chat.append({"role": "user", "content": message})
        index = len(chat)
        turn = index
        chat.append({"role": "assistant", "content": streaming_html("", turn)})
        yield "", chat, gr.skip(), history, panels
        answer: Answer | None = None
        try:
            filters = _filters(year_from, year_to, author, category)
            shown = ""
            for item in assistant.ask_stream(message, int(top_k), filters=filters, history=history):
                if isinstance(item, Answer):
                    answer = item
                else:
                    shown += item  # a sentence the verifier kept (rag/pipeline.py)
                    chat[index] = {"role": "assistant", "content": streaming_html(shown, turn)}
                    yield gr.skip(), chat, gr.skip(), history, panels
        except RagError as exc:
            chat[index] = {"role": "assistant", "content": error_html(str(exc))}
            yield gr.skip(), chat, gr.skip(), history, panels
            return
        except Exception:
            log.exception("answering %r failed", message)
            chat[index] = {"role": "assistant", "content": error_html(GENERIC_ERROR)}
            yield gr.skip(), chat, gr.skip(), history, panels
            return
        if answer is None:  # ask_stream always ends with an Answer; be safe anyway
            chat[index] = {"role": "assistant", "content": error_html(GENERIC_ERROR)}
            yield gr.skip(), chat, gr.skip(), history, panels
            return
        # The final rendering replaces the streamed one: per-sentence support hints, flags, the
        # status line, and the sources panel the [n] links point to.
        chat[index] = {"role": "assistant", "content": answer_html(answer, turn)}
        panel = sources_html(answer, turn)
        panels[index] = panel
        history += [
            {"role": "user", "content": message},
            {"role": "assistant", "content": answer.text, "sources": _cited_titles(answer)},
        ]
        yield gr.skip(), chat, panel, history, panels

    def show_sources(panels: dict[int, str] | None, evt: gr.SelectData) -> Any:
        index = evt.index if isinstance(evt.index, int) else None
        if index is None or not panels or index not in panels:
            return gr.skip()
        return panels[index]

    def new_chat() -> tuple[Any, ...]:
        return [], [], {}, sources_html(None, 0), ""

    def ingest(
        files: list[str] | None,
        access_key: str | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - how Gradio injects a tracker
    ) -> tuple[Any, Any]:
        # Who may add, then which files: both decided before any file is opened (ui/access.py).
        if (why := refusal(settings, policy, access_key)) is not None:
            gr.Warning(why)
            return report_error_html(why), gr.skip()
        given = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files or []]
        if not given:
            gr.Warning("Choose one or more .txt, .jsonl, .json or .csv files first.")
            return report_error_html(
                "No file chosen. Drop .txt, .jsonl, .json or .csv files above."
            ), gr.skip()
        try:
            paths = only_uploaded(given, getattr(demo, "upload_file_set", ()), upload_folder())
        except ConfigError as exc:
            log.warning("refused to ingest files not uploaded through the page: %s", given)
            gr.Warning(str(exc))
            return report_error_html(str(exc)), gr.skip()
        names = {p: Path(p).name for p in paths}
        for path in paths:
            size = os.path.getsize(path)
            if size > max_upload_bytes(assistant):
                size_mb = size / 1024 / 1024
                message = (
                    f"{short_name(names[path])} is {size_mb:.1f} MB; the upload limit is "
                    f"{max_mb:g} MB. Split the file, or raise RAG_MAX_UPLOAD_MB, or run "
                    "`rag ingest FILE`."
                )
                gr.Warning(message)
                return report_error_html(message), gr.skip()
        progress(0, desc="Reading files")

        def step(done: int, total: int | None) -> None:
            progress((done, total), desc="Embedding papers", unit="papers")

        try:
            report = assistant.ingest(paths, progress=step)
        except RagError as exc:
            message = safe_reason(str(exc), names)
            gr.Warning(message)
            return report_error_html(message), gr.skip()
        except Exception:
            log.exception("ingesting %s failed", paths)
            return report_error_html(GENERIC_ERROR), gr.skip()
        return report_html(report, names), corpus_line()

    with gr.Blocks(title="rag · ask the papers", fill_height=True, fill_width=True) as demo:
        history = gr.State([])
        panels = gr.State({})
        with gr.Sidebar(label="Settings", open=True, width=300):
            gr.Markdown("### Search")
            top_k = gr.Slider(1, 20, value=settings.top_k, step=1, label="Sources per answer")
            with gr.Row():
                year_from = gr.Dropdown(YEARS, value=ANY_YEAR, label="From year", min_width=100)
                year_to = gr.Dropdown(YEARS, value=ANY_YEAR, label="To year", min_width=100)
            author = gr.Textbox(label="Author contains", placeholder="e.g. Tay")
            category = gr.Textbox(
                label="arXiv categories", placeholder="e.g. cs.CL, Machine Learning"
            )
            gr.Markdown("### Add papers")
            if note := policy_note(settings, policy):
                gr.Markdown(note, elem_id="rag-ingest-note")
            upload = gr.File(
                label=f"Corpus files (.txt .jsonl .json .csv, ≤ {max_mb:g} MB each)",
                file_types=UPLOAD_TYPES,
                file_count="multiple",
                interactive=policy != "off",
            )
            # Sent with each ingest; shown only when RAG_UI_INGEST resolves to `key`.
            access_key = gr.Textbox(
                label="Access key (RAG_API_KEY)",
                type="password",
                visible=policy == "key",
                elem_id="rag-access-key",
                max_lines=1,
            )
            ingest_btn = gr.Button(
                "Add to corpus", variant="secondary", interactive=policy != "off"
            )
            report = gr.HTML(elem_id="rag-report")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=420):
                with gr.Row(elem_classes="rag-header"):
                    gr.Markdown(
                        "# Ask the papers\nEvery sentence of an answer cites an abstract and is "
                        "checked against it; when the corpus does not say, neither do we."
                    )
                corpus = gr.Markdown(elem_id="rag-corpus")
                chatbot = gr.Chatbot(
                    elem_id="rag-chat",
                    show_label=False,
                    height="68vh",
                    latex_delimiters=[],
                    feedback_options=None,
                    buttons=["copy"],
                    placeholder="Ask a question about the papers, or pick an example below.",
                )
                with gr.Row():
                    msg = gr.Textbox(
                        elem_id="rag-input",
                        show_label=False,
                        placeholder="Ask about the papers… (Enter to send)",
                        scale=6,
                        autofocus=True,
                        max_lines=4,
                    )
                    send = gr.Button("Ask", variant="primary", scale=1, min_width=80)
                    clear = gr.Button("New chat", scale=1, min_width=120)
                gr.Examples(EXAMPLES, inputs=msg, label="Example questions")
            with gr.Column(scale=2, min_width=320, elem_id="rag-sources-col"):
                sources = gr.HTML(sources_html(None, 0), elem_id="rag-sources")

        ask_inputs = [msg, chatbot, history, panels, top_k, year_from, year_to, author, category]
        ask_outputs = [msg, chatbot, sources, history, panels]
        # Several people can ask at once; answering is read-only and the Assistant is thread-safe.
        msg.submit(
            respond,
            ask_inputs,
            ask_outputs,
            api_name="ask",
            concurrency_limit=4,
            concurrency_id="ask",
        )
        send.click(
            respond,
            ask_inputs,
            ask_outputs,
            api_name=False,
            concurrency_limit=4,
            concurrency_id="ask",
        )
        chatbot.select(show_sources, [panels], [sources], api_name=False, queue=False)
        clear.click(
            new_chat,
            None,
            [chatbot, history, panels, sources, msg],
            api_name="new_chat",
            queue=False,
        )
        ingest_btn.click(
            ingest,
            [upload, access_key],
            [report, corpus],
            api_name="ingest",
            concurrency_limit=1,
            concurrency_id="ingest",
        )
        demo.load(corpus_line, None, corpus, api_name=False)
    return demo
