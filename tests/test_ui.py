"""The Gradio UI: HTML rendering (fast, offline) and the running app driven by gradio_client (e2e).

The e2e half serves `rag_ui.server.build_app` with uvicorn on a free 127.0.0.1 port over a real
ingested store, then talks to it the way any Gradio client does.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LRA_TITLE, serving

from rag import (
    CANNOT_ANSWER,
    Answer,
    Assistant,
    IngestFailure,
    IngestReport,
    Sentence,
    Settings,
    Source,
)
from rag.verify import render
from rag_ui.render import answer_html, esc, highlight, report_html, sources_html, streaming_html

LRA_QUESTION = "What range of sequence lengths does the Long Range Arena benchmark cover?"
EVIL = "We sort gravel. <script>window.__pwned=1</script> The sorter reaches 93.4% purity."


def _source(number: int = 1, text: str = EVIL, title: str = "Gravel <b>Sorting</b>") -> Source:
    return Source(
        number=number,
        paper_id=f"p{number}",
        title=title,
        published=dt.date(2024, 5, 1),
        authors=["Ada Stone", "Bo Pebble"],
        snippet=text,
        text=text,
        score=0.71,
    )


# ------------------------------------------------------------------------------ rendering, fast
def test_untrusted_text_is_escaped_everywhere() -> None:
    src = _source()
    answer = Answer(
        question="What <i>purity</i>?",
        text="The sorter reaches 93.4% purity [1].",
        sources=[src],
        sentences=[
            Sentence(
                text="The sorter reaches 93.4% purity <script>x</script>.",
                citations=[1],
                support="The sorter reaches 93.4% purity.",
                support_source=1,
            )
        ],
    )
    chat, panel = answer_html(answer, 3), sources_html(answer, 3)
    for markup in (chat, panel):
        assert "<script>" not in markup and "<b>Sorting</b>" not in markup and "<i>" not in markup
    assert "<script>window.__pwned=1</script>" in html.unescape(panel)  # shown as text
    assert "<mark>The sorter reaches 93.4% purity.</mark>" in panel
    assert 'href="#rag-t3-s1"' in chat and ">[1]</a>" in chat
    assert 'id="rag-t3-s1"' in panel
    # Template and Markdown syntax in an abstract is shown, not interpreted.
    assert (
        esc("${x} {{y}} `z` *w*")
        == "&#36;&#123;x&#125; &#123;&#123;y&#125;&#125; &#96;z&#96; &#42;w&#42;"
    )


def test_highlight_finds_support_across_whitespace_and_title_prefixed_pairs() -> None:
    text = "First claim here.  Second   claim follows here. Third one."
    marked = highlight(text, ["Some Title. Second claim follows here."])
    assert "<mark>Second   claim follows here.</mark>" in marked
    assert highlight("a < b is true.", ["nothing matches this one"]) == "a &lt; b is true."


def test_abstention_flags_and_notice_look_different() -> None:
    src = _source()
    abstained = Answer(question="q", text=CANNOT_ANSWER, sources=[src], abstained=True)
    markup = answer_html(abstained, 1)
    assert 'class="rag-abstain"' in markup and CANNOT_ANSWER in markup and "0.71" in markup
    flagged = Answer(
        question="q",
        text="Gravel is sorted [1]. It cures cancer [1].",
        sources=[src],
        sentences=[
            Sentence(
                text="Gravel is sorted.", citations=[1], support="We sort gravel.", support_source=1
            ),
            Sentence(text="It cures cancer.", citations=[1], supported=False),
        ],
        backend="openai:gpt-4o-mini",
        notice="The language model failed (timeout); this is the extractive answer instead.",
        filters={"years": "2020–2024", "author": "Stone"},
    )
    markup = answer_html(flagged, 1)
    assert markup.count('class="rag-flag"') == 1 and "unverified" in markup
    assert 'class="rag-notice"' in markup and "extractive answer instead" in markup
    assert "openai:gpt-4o-mini" in markup and "years: 2020–2024" in markup
    assert "author: Stone" in markup


def _answer_text(markup: str) -> str:
    body = re.search(r'<div class="rag-answer">(.*?)</div>', markup)
    assert body, markup
    return html.unescape(re.sub(r"<[^>]+>", "", body.group(1)))


def _cite_tags(markup: str) -> list[str]:
    return re.findall(r'<a class="rag-cite" href="[^"]*" data-turn="\d+" data-source="\d+"', markup)


def test_streamed_text_is_shown_as_an_answer_with_a_neutral_chip() -> None:
    """ask_stream yields verified sentences (rag/pipeline.py): shown in answer styling, [n] linked
    as in the final answer, a neutral "answering…" chip, nothing that says it may be withdrawn."""
    sentences = [
        Sentence(text="Gravel is sorted <script>x</script>.", citations=[1, 2]),
        Sentence(text="The sorter reaches 93.4% purity.", citations=[2]),
    ]
    streamed = "".join(render([s]) + " " for s in sentences)  # what the pipeline yields
    markup = streaming_html(streamed, 3)
    final = answer_html(
        Answer(
            question="q",
            text=render(sentences),
            sources=[_source(1), _source(2)],
            sentences=sentences,
        ),
        3,
    )
    assert 'class="rag-msg rag-streaming"' in markup and 'class="rag-answer"' in markup
    assert "answering…" in markup and '<span class="rag-chip">answering…</span>' in markup
    for gone in ("rag-preview", "checking citations", "opacity", "unverified"):
        assert gone not in markup
    # The chip row is not the final answer's status line (browser tests count those as answers).
    assert 'class="rag-status"' not in markup
    # The citations are the final answer's links to the same source cards (untitled until the
    # sources arrive), and the text reads the same.
    assert _cite_tags(markup) == _cite_tags(final) and len(_cite_tags(markup)) == 3
    assert 'href="#rag-t3-s2"' in markup
    assert _answer_text(markup) == _answer_text(final)
    assert _answer_text(markup).startswith("Gravel is sorted <script>x</script> [1][2].")
    assert "<script>" not in markup and "<script>x</script>" in html.unescape(markup)

    # Nothing streamed yet: a line saying so. A blank line (before the fallback answer after a
    # model failure) must not end the message's HTML block in Markdown.
    empty = streaming_html("", 1)
    assert "Searching the papers…" in empty and "rag-answer" not in empty and "answering…" in empty
    cut = streaming_html("Gravel is sorted [1]. \n\nThe sorter reaches 93.4% purity [1]. ", 1)
    assert "\n" not in cut and "sorted <a" in cut and "</a>.<br><br>The sorter" in cut


def test_the_chat_shows_each_streamed_sentence_then_the_final_answer(settings: Settings) -> None:
    """The ask handler (ui/app.py `respond`) over a stand-in Assistant: a neutral placeholder, the
    sentences as they come, then the final rendering and its sources panel replace them."""
    from rag_ui.app import build_ui

    sentences = [
        Sentence(
            text="Gravel is sorted.", citations=[1], support="We sort gravel.", support_source=1
        ),
        Sentence(text="The sorter reaches 93.4% purity.", citations=[2]),
    ]
    answer = Answer(
        question="How is gravel sorted?",
        text=render(sentences),
        sources=[_source(1), _source(2)],
        sentences=sentences,
    )

    class Streaming:
        def __init__(self) -> None:
            self.settings = settings

        def ask_stream(self, question: str, top_k: int, **_: Any) -> Iterator[str | Answer]:
            for sentence in sentences:
                yield render([sentence]) + " "
            yield answer

    demo = build_ui(Streaming())  # type: ignore[arg-type]
    respond = next(f.fn for f in demo.fns.values() if f.api_name == "ask")
    shown: list[str] = []
    for frame in respond("How is gravel sorted?", [], [], {}, 5, "any", "any", ""):
        shown.append(frame[1][-1]["content"])  # the handler updates one chat list in place
    assert len(shown) == 4 and all('class="rag-status"' not in m for m in shown[:3])
    assert shown[:3] == [
        streaming_html("", 1),
        streaming_html(render(sentences[:1]) + " ", 1),
        streaming_html(render(sentences) + " ", 1),
    ]
    assert "answering…" in shown[2] and 'href="#rag-t1-s2"' in shown[2]
    _, chat, panel, history, panels = frame
    assert chat[-1]["content"] == answer_html(answer, 1) and "answering…" not in chat[-1]["content"]
    assert panel == sources_html(answer, 1) == panels[1] and 'id="rag-t1-s2"' in panel
    assert history[-1]["content"] == answer.text


def test_report_names_failures_by_upload_name_and_line() -> None:
    report = IngestReport(
        added=2,
        failed=[
            IngestFailure(file="/tmp/gradio/abc/papers.jsonl", line=3, reason="malformed <JSON>")
        ],
    )
    markup = report_html(report)
    assert "papers.jsonl:3" in markup and "/tmp/gradio" not in markup
    assert "malformed &lt;JSON&gt;" in markup and "Ingested with problems" in markup


# ------------------------------------------------------------------------------- the app, e2e
@pytest.fixture
def ui_url(real_assistant: Assistant) -> Iterator[str]:
    # A small upload limit (51 KiB) so the size check can be tested with a small file.
    real_assistant.settings = real_assistant.settings.with_overrides(max_upload_mb=0.05)
    with serving(real_assistant, startup=60) as url:
        yield url


def _client(url: str):  # type: ignore[no-untyped-def]
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


def _raw(content: object) -> str:
    """A chat message's HTML (Gradio 6 sends content as a list of typed parts)."""
    if isinstance(content, list):
        return " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _text(content: object) -> str:
    """What a chat message shows: its HTML without tags, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", _raw(content)))


@pytest.mark.e2e
def test_ask_upload_and_bad_uploads_through_gradio_client(ui_url: str, tmp_path: Path) -> None:
    from gradio_client import handle_file

    client = _client(ui_url)
    _, chat, panel = client.predict(LRA_QUESTION, [], 5, "any", "any", "", "", api_name="/ask")
    reply = chat[-1]["content"]
    assert chat[-2]["role"] == "user" and _text(chat[-2]["content"]) == LRA_QUESTION
    assert "16K" in _text(reply) and re.search(r"\[\d+\]", _text(reply))
    assert LRA_TITLE in panel and "<mark>" in panel

    # A follow-up in the same chat names the paper it refers to.
    _, chat, panel = client.predict(
        "Which models does it evaluate?", chat, 5, "any", "any", "", "", api_name="/ask"
    )
    assert re.search(r"Read as: .*Long Range Arena", _text(chat[-1]["content"]))
    assert LRA_TITLE in panel

    # Upload: two good records, one malformed line, one without an abstract.
    papers = tmp_path / "mine.jsonl"
    papers.write_text(
        "\n".join(
            [
                json.dumps(
                    {
                        "id": "9999.00001",
                        "title": "Quantum Gravel Sorting with Transformers",
                        "abstract": "We sort quantum gravel with a transformer. Our gravel sorter "
                        "reaches 93.4% purity on the GravelBench dataset.",
                        "authors": "Ada Stone, Bo Pebble",
                        "published": "2024-05-01",
                    }
                ),
                json.dumps(
                    {
                        "title": "Sorting Pebbles by Size",
                        "abstract": "We sort pebbles by size with convolutional networks and "
                        "reach ninety percent accuracy on PebbleSet.",
                    }
                ),
                "{not json",
                json.dumps({"title": "No abstract here"}),
            ]
        )
        + "\n"
    )
    report, corpus = client.predict([handle_file(str(papers))], api_name="/ingest")
    text = _text(report)
    assert re.search(r"2\s*added", text) and re.search(r"2\s*failed", text)
    assert "mine.jsonl:3" in text and "malformed JSON" in text
    assert "mine.jsonl:4" in text and "no abstract" in text
    assert "279" in corpus  # 277 bundled + 2 new papers

    _, chat, panel = client.predict(
        "What purity does the gravel sorter reach on GravelBench?",
        [],
        5,
        "any",
        "any",
        "",
        "",
        api_name="/ask",
    )
    assert "93.4%" in _text(chat[-1]["content"]) and "Quantum Gravel Sorting" in panel

    # Uploading the same file again changes nothing.
    report, _ = client.predict([handle_file(str(papers))], api_name="/ingest")
    assert re.search(r"2\s*unchanged", _text(report))

    # A wrong file type and a file over the limit: a clear message, never a traceback.
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.4 not a corpus")
    with pytest.raises(Exception, match=r"Invalid file type") as info:
        client.predict([handle_file(str(pdf))], api_name="/ingest")
    assert "Traceback" not in str(info.value)
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"title": "Big", "abstract": "word " * 20_000}) + "\n")
    with pytest.raises(Exception, match=r"exceeds the maximum file size") as info:
        client.predict([handle_file(str(big))], api_name="/ingest")
    assert "Traceback" not in str(info.value)


@pytest.mark.e2e
def test_errors_are_inline_notices(ui_url: str) -> None:
    client = _client(ui_url)
    _, chat, _ = client.predict(LRA_QUESTION, [], 5, "2024", "2020", "", "", api_name="/ask")
    reply = _text(chat[-1]["content"])
    assert "'From year' 2024 is after 'To year' 2020" in reply and "Traceback" not in reply
    _, chat, _ = client.predict("x" * 2500, [], 5, "any", "any", "", "", api_name="/ask")
    assert "over 2,000 characters" in _text(chat[-1]["content"])
    # Filters reach retrieval and are shown with the answer.
    _, chat, _ = client.predict(LRA_QUESTION, [], 5, "2019", "2021", "", "", api_name="/ask")
    assert "years: 2019–2021" in _text(chat[-1]["content"])


def test_serve_binds_localhost_without_share_by_default(
    monkeypatch: pytest.MonkeyPatch, fake_assistant: Assistant
) -> None:
    import uvicorn

    from rag_ui import server

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    server.serve(fake_assistant)
    assert seen["host"] == "127.0.0.1" and seen["port"] == 7860


@pytest.mark.e2e
def test_two_people_asking_at_once_both_get_their_answers(ui_url: str) -> None:
    first, second = _client(ui_url), _client(ui_url)
    jobs = [
        first.submit(LRA_QUESTION, [], 5, "any", "any", "", "", api_name="/ask"),
        second.submit(
            "How does DeiT-LT distill knowledge for tail classes?",
            [],
            5,
            "any",
            "any",
            "",
            "",
            api_name="/ask",
        ),
    ]
    (_, lra, _), (_, deit, _) = (job.result(timeout=600) for job in jobs)
    assert "16K" in _text(lra[-1]["content"]) and "DIST" in _text(deit[-1]["content"])
    assert len(lra) == len(deit) == 2  # each session kept its own conversation


@pytest.mark.e2e
def test_llm_backend_badge_flagged_sentence_and_fallback_notice(
    real_assistant: Assistant, fake_llm: Any
) -> None:
    fake_llm.reply = lambda messages: (
        "Long Range Arena covers sequences from 1K to 16K tokens [1]. "
        "It was first run by NASA in 1969 [1]."
    )
    settings = real_assistant.settings.with_overrides(
        llm="openai", llm_base_url=fake_llm.base_url, llm_max_retries=0, unsupported="flag"
    )
    assistant = Assistant(settings, embedder=real_assistant.embedder, store=real_assistant.store)
    with serving(assistant, startup=60) as url:
        client = _client(url)
        _, chat, _ = client.predict(LRA_QUESTION, [], 5, "any", "any", "", "", api_name="/ask")
        reply = _raw(chat[-1]["content"])
        assert "openai:gpt-4o-mini" in reply and "16K" in _text(reply)
        assert reply.count('class="rag-flag"') == 1 and "NASA" in _text(reply)

        fake_llm.fault = "500"
        _, chat, _ = client.predict(LRA_QUESTION, [], 5, "any", "any", "", "", api_name="/ask")
        reply = _raw(chat[-1]["content"])
        assert 'class="rag-notice"' in reply and "language model failed" in _text(reply)
        assert ">extractive<" in reply and "16K" in _text(reply)
