"""The chat UI in a real browser: Debian's chromium driven by Playwright (no browser download).

Asks the LRA question and watches the streamed sentences (answer styling, linked [n], a neutral
"answering…" chip) until the verified, cited answer replaces them; clicks a citation and checks
that its source card is highlighted with the supporting sentence marked; uploads papers, one of
them with `<script>` in its abstract, and checks it renders as text and never runs; checks the
upload size limit and "New chat". Screenshots go to test-artifacts/ (gitignored).

Gradio pages keep a connection open, so nothing here waits for network idle: every wait is for
an element or a JS condition.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LRA_TITLE, ROOT
from test_ui import LRA_QUESTION, serving

from rag import Assistant

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ANSWERED = (
    "(n) => document.querySelectorAll('#rag-chat .rag-msg .rag-status').length >= n"
    " && !document.querySelector('#rag-chat .rag-streaming')"
)
# Records each streamed state of the answer (ui/render.py `streaming_html`) as the page shows it.
WATCH_STREAM = """() => {
  window.__ragStream = [];
  const chat = document.querySelector('#rag-chat');
  new MutationObserver(() => chat.querySelectorAll('.rag-streaming').forEach((msg) => {
    const body = msg.querySelector('.rag-answer');
    window.__ragStream.push({
      text: msg.innerText,
      chip: (msg.querySelector('.rag-stream-status') || msg).innerText.trim(),
      opacity: [msg, body].filter(Boolean).map((el) => getComputedStyle(el).opacity),
      brackets: (body ? body.innerText.match(/\\[\\d+\\]/g) || [] : []).length,
      links: msg.querySelectorAll('a.rag-cite').length,
    });
  })).observe(chat, {childList: true, subtree: true, characterData: true});
}"""
EVIL_ABSTRACT = (
    "We sort quantum gravel with a transformer. Our gravel sorter reaches 93.4% purity on the "
    "GravelBench dataset. Its demo page embeds <script>window.__pwned=1</script> and "
    '<img src=x onerror="window.__pwned=2"> tags. Template probes such as ${7*7} and {{value}} '
    "stay literal."
)


@pytest.fixture
def page(real_assistant: Assistant) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing: apt-get install chromium to run browser tests")
    from playwright.sync_api import sync_playwright

    real_assistant.settings = real_assistant.settings.with_overrides(max_upload_mb=0.05)
    ARTIFACTS.mkdir(exist_ok=True)
    with serving(real_assistant) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1500, "height": 950})
            tab.set_default_timeout(120_000)
            tab.goto(url)
            tab.wait_for_selector("#rag-input textarea")
            yield tab
        finally:
            browser.close()


def ask(page: Any, question: str, answers_before: int) -> Any:
    page.fill("#rag-input textarea", question)
    page.keyboard.press("Enter")
    page.wait_for_function(ANSWERED, arg=answers_before + 1)
    return page.locator("#rag-chat .rag-msg").last


def test_chat_citations_sources_upload_and_script_injection(page: Any, tmp_path: Path) -> None:
    # The corpus line is filled on load.
    page.wait_for_function(
        "() => /277\\s+papers/.test(document.querySelector('#rag-corpus').innerText)"
    )

    # 1. Ask: the streamed sentences are shown as an answer, not dimmed, with a neutral chip;
    # then the verified answer quotes 16K and cites [n], and its sources fill the panel.
    page.evaluate(WATCH_STREAM)
    answer = ask(page, LRA_QUESTION, 0)
    streamed = page.evaluate("window.__ragStream")
    assert streamed, "the answer was never seen streaming"
    for state in streamed:
        assert state["chip"] == "answering…" and "checking citations" not in state["text"]
        assert all(opacity == "1" for opacity in state["opacity"]), state
        assert state["links"] == state["brackets"], state
    assert "16K" in answer.inner_text()
    cite = answer.locator("a.rag-cite").first
    assert re.fullmatch(r"\[\d+\]", cite.inner_text())
    assert "extractive" in answer.locator(".rag-badge").inner_text()
    assert LRA_TITLE in page.inner_text("#rag-sources")
    page.screenshot(path=str(ARTIFACTS / "ui-answer.png"))

    # 2. Click the citation: its source card is flashed, and the support sentence is marked.
    target = cite.get_attribute("href").lstrip("#")
    cite.click()
    card = page.locator(f"#{target}")
    page.wait_for_function(
        "(id) => document.getElementById(id).classList.contains('rag-flash')", arg=target
    )
    assert LRA_TITLE in card.inner_text()
    assert "16K" in " ".join(card.locator("mark").all_inner_texts())
    assert len(page.context.pages) == 1  # no new tab, no navigation
    page.screenshot(path=str(ARTIFACTS / "ui-citation.png"))

    # 3. A follow-up is read in the context of the first answer.
    follow = ask(page, "Which models does it evaluate?", 1)
    assert re.search(r"Read as: .*Long Range Arena", follow.inner_text())
    assert LRA_TITLE in page.inner_text("#rag-sources")

    # 4. Upload papers: one with a script in its abstract, one malformed line.
    papers = tmp_path / "evil.jsonl"
    papers.write_text(
        json.dumps(
            {
                "id": "9999.00001",
                "title": "Quantum Gravel Sorting with Transformers",
                "abstract": EVIL_ABSTRACT,
                "authors": "Ada Stone, Bo Pebble",
                "published": "2024-05-01",
            }
        )
        + "\n{not json\n"
    )
    page.locator("input[type=file]").first.set_input_files(str(papers))
    page.get_by_role("button", name="Add to corpus").click()
    page.wait_for_selector("#rag-report .rag-report-head")
    report = page.inner_text("#rag-report")
    assert (
        re.search(r"1\s+added", report) and "evil.jsonl:2" in report and "malformed JSON" in report
    )
    page.wait_for_function(
        "() => /278\\s+papers/.test(document.querySelector('#rag-corpus').innerText)"
    )
    page.screenshot(path=str(ARTIFACTS / "ui-upload.png"))

    # 5. Ask about it: the script is shown as text in the answer and the sources, never run.
    page.get_by_role("button", name="New chat").click()
    page.wait_for_function("() => !document.querySelector('#rag-chat .rag-msg')")
    answer = ask(page, "What purity does the gravel sorter reach on GravelBench?", 0)
    assert "93.4%" in answer.inner_text()
    sources = page.inner_text("#rag-sources")
    assert "<script>window.__pwned=1</script>" in sources
    assert '<img src=x onerror="window.__pwned=2">' in sources
    assert "${7*7} and {{value}}" in sources
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert (
        page.evaluate(
            "document.querySelectorAll('#rag-sources script, #rag-chat script, "
            "#rag-sources img, #rag-chat .rag-msg img').length"
        )
        == 0
    )
    page.screenshot(path=str(ARTIFACTS / "ui-script-as-text.png"))

    # 6. Over the size limit (51 KiB here): a clear message, nothing ingested.
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"title": "Big", "abstract": "word " * 20_000}) + "\n")
    page.locator("input[type=file]").first.set_input_files(str(big))
    page.get_by_text(re.compile("exceed the maximum allowed size")).first.wait_for()
    page.wait_for_timeout(800)  # let the toast slide in before the screenshot
    page.screenshot(path=str(ARTIFACTS / "ui-too-large.png"))


def test_abstention_and_bad_filters_are_shown_inline(page: Any) -> None:
    answer = ask(page, "What is the boiling point of liquid nitrogen at sea level in Kelvin?", 0)
    assert answer.locator(".rag-abstain").count() == 1
    assert "The corpus does not say." in answer.inner_text()

    page.get_by_label("Author contains").fill("Nobody Atall")
    answer = ask(page, LRA_QUESTION, 1)
    assert "author: Nobody Atall" in answer.inner_text()
    assert answer.locator(".rag-abstain").count() == 1
    page.screenshot(path=str(ARTIFACTS / "ui-abstain.png"))
