"""The UI's ingest report names every replaced paper with both titles, escaped."""

from __future__ import annotations

from rag.types import IngestReport, PaperReplacement
from rag_ui.render import report_html


def test_a_replaced_paper_is_reported_with_both_titles() -> None:
    report = IngestReport(
        updated=1,
        replaced=[
            PaperReplacement(
                paper_id="2101.00001",
                old_title="Old <b>Title</b>",
                new_title="A Different Paper",
                file="/tmp/x/papers.jsonl",
                line=3,
            )
        ],
    )
    html = report_html(report)
    assert "Replaced (1)" in html and "A Different Paper" in html
    assert "Old &lt;b&gt;Title&lt;/b&gt;" in html and "<b>Title</b>" not in html
