"""How the chat page looks: the theme (system fonts only — the default one fetches Google Fonts,
and rag runs offline), the page's CSS, and the small script that makes a click on [n] show its
source card. Behaviour lives in ui/app.py."""

from __future__ import annotations

from typing import Any

import gradio as gr

CSS = """
.rag-header h1 {margin: 0; font-size: 1.35rem;}
.rag-header p {margin: 0.15rem 0 0; color: var(--body-text-color-subdued); font-size: 0.9rem;}
.rag-msg {line-height: 1.55;}
.rag-cite {font-weight: 600; text-decoration: none !important; color: var(--color-accent) !important;
  padding: 0 1px; border-radius: 3px; cursor: pointer;}
.rag-cite:hover {background: var(--color-accent-soft);}
.rag-flag {background: rgba(245, 158, 11, 0.14); border-bottom: 2px dotted #f59e0b;}
.rag-flag-tag {font-size: 0.7rem; text-transform: uppercase; letter-spacing: 0.03em;
  background: #f59e0b; color: #111; border-radius: 3px; padding: 0 4px; margin-right: 2px;}
.rag-abstain {border-left: 4px solid #64748b; background: rgba(100, 116, 139, 0.12);
  padding: 6px 10px; border-radius: 4px;}
.rag-notice {border-left: 4px solid #f59e0b; background: rgba(245, 158, 11, 0.12);
  padding: 4px 10px; border-radius: 4px; margin-bottom: 6px; font-size: 0.9rem;}
.rag-error {border-left: 4px solid #dc2626; background: rgba(220, 38, 38, 0.1);
  padding: 6px 10px; border-radius: 4px;}
.rag-why {color: var(--body-text-color-subdued); font-size: 0.85rem; margin-top: 2px;}
.rag-status, .rag-stream-status {margin-top: 8px; display: flex; flex-wrap: wrap; gap: 4px;}
.rag-badge, .rag-chip {font-size: 0.72rem; border-radius: 999px; padding: 1px 8px;
  border: 1px solid var(--border-color-primary); color: var(--body-text-color-subdued);}
.rag-badge {background: var(--color-accent-soft); color: var(--body-text-color);
  border-color: transparent; font-weight: 600;}
.rag-sources {display: flex; flex-direction: column; gap: 8px;}
.rag-sources-head {font-weight: 600; font-size: 0.9rem; color: var(--body-text-color-subdued);}
.rag-empty {color: var(--body-text-color-subdued); font-size: 0.9rem; padding: 8px 2px;}
.rag-src {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 10px;
  background: var(--background-fill-primary); scroll-margin: 12px;
  transition: box-shadow 0.3s, border-color 0.3s;}
.rag-src:not(.rag-cited) {opacity: 0.8;}
.rag-src.rag-cited {border-left: 4px solid var(--color-accent);}
.rag-src.rag-flash, .rag-src:target {border-color: #f59e0b;
  box-shadow: 0 0 0 3px rgba(245, 158, 11, 0.45); opacity: 1;}
.rag-src-title {font-weight: 600; line-height: 1.35;}
.rag-num {display: inline-block; min-width: 1.5em; text-align: center; margin-right: 6px;
  border-radius: 4px; background: var(--color-accent); color: white; font-size: 0.8rem;}
.rag-meta {font-size: 0.78rem; color: var(--body-text-color-subdued); margin: 2px 0 4px;}
.rag-used {color: var(--color-accent);}
.rag-abstract {font-size: 0.86rem; line-height: 1.5; white-space: normal; overflow-wrap: anywhere;}
.rag-abstract mark {background: #fde68a; color: #111; border-radius: 2px; padding: 0 1px;}
.rag-details summary {cursor: pointer; font-size: 0.8rem; color: var(--body-text-color-subdued);}
.rag-report-head {font-weight: 600; margin-bottom: 4px;}
.rag-counts {display: grid; grid-template-columns: repeat(5, 1fr); gap: 4px; text-align: center;
  font-size: 0.7rem; color: var(--body-text-color-subdued);}
.rag-count b {display: block; font-size: 1.05rem; color: var(--body-text-color);}
.rag-count.rag-bad b {color: #dc2626;}
.rag-failures {font-size: 0.8rem; margin: 6px 0 0; padding-left: 1.1em;}
#rag-sources-col {max-height: calc(100vh - 40px); overflow-y: auto;}
"""

# A click on [n] scrolls the sources panel to that source and flashes it. If the panel shows a
# different answer, the click also selects this message (Chatbot.select swaps the panel), so the
# card is looked for again for a moment.
HEAD = """
<script>
document.addEventListener("click", function (event) {
  var link = event.target.closest ? event.target.closest("a.rag-cite") : null;
  if (!link) return;
  event.preventDefault();
  var id = (link.getAttribute("href") || "").slice(1);
  var tries = 0;
  (function show() {
    var card = document.getElementById(id);
    if (!card) { if (tries++ < 50) setTimeout(show, 100); return; }
    document.querySelectorAll(".rag-src.rag-flash").forEach(function (el) {
      el.classList.remove("rag-flash");
    });
    card.classList.add("rag-flash");
    card.scrollIntoView({behavior: "smooth", block: "nearest"});
  })();
}, true);
</script>
"""


def ui_options() -> dict[str, Any]:
    """Page-level options (Gradio 6 takes them at mount/launch time, not in `gr.Blocks`)."""
    system = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
    mono = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
    # System fonts only: the default theme would fetch Google Fonts, and rag runs offline.
    theme = gr.themes.Soft(primary_hue="indigo", neutral_hue="slate", font=system, font_mono=mono)
    return {"theme": theme, "css": CSS, "head": HEAD}
