"""CORS in a real browser: a page on another origin calls the served /v1 API with `fetch`
(Debian's chromium driven by Playwright). Allowed when its origin is in RAG_API_CORS_ORIGINS,
refused by the browser when it is not."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import served
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from rag import Assistant, Settings
from rag.api import create_api

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
KEY = "sk-rag-browser-cors-5e6f"
QUESTION = "What range of sequence lengths does the Long Range Arena benchmark cover?"
ASK = """async ([api, key, question]) => {
  const headers = {"Content-Type": "application/json"};
  if (key) headers["Authorization"] = "Bearer " + key;
  try {
    const r = await fetch(api + "/v1/chat/completions", {method: "POST", headers,
      body: JSON.stringify({model: "rag-extractive", messages: [{role: "user", content: question}]})});
    const body = await r.json();
    return {status: r.status, content: body.choices ? body.choices[0].message.content : null,
            error: body.error ? body.error.code : null};
  } catch (e) {
    return {status: 0, blocked: String(e)};
  }
}"""


def page_app() -> Starlette:
    async def home(request: Any) -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>notebook</title><p>a page on another origin</p>")

    return Starlette(routes=[Route("/", home)])


def test_a_page_on_an_allowed_origin_can_call_the_api(real_store_dir: Path, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing: apt-get install chromium to run browser tests")
    from playwright.sync_api import sync_playwright

    data_dir = tmp_path / "store"
    shutil.copytree(real_store_dir, data_dir)
    with (
        served(page_app(), lifespan="off") as page_url,
        served(page_app(), lifespan="off") as other,
    ):
        settings = Settings(
            data_dir=data_dir, api_key=KEY, api_cors_origins=page_url, _env_file=None
        )
        with (
            served(create_api(Assistant(settings)), startup=60, lifespan="off") as api,
            sync_playwright() as p,
        ):
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                tab = browser.new_page()
                tab.goto(page_url)
                answered = tab.evaluate(ASK, [api, KEY, QUESTION])
                assert answered["status"] == 200, answered
                assert "16K" in answered["content"] and "[1]" in answered["content"]
                # A 401 reaches the page as a readable error, not an opaque CORS failure.
                refused = tab.evaluate(ASK, [api, "", QUESTION])
                assert refused == {"status": 401, "content": None, "error": "invalid_api_key"}
                tab.goto(other)  # another port: an origin that is not listed
                blocked = tab.evaluate(ASK, [api, KEY, QUESTION])
                assert blocked["status"] == 0 and "Failed to fetch" in blocked["blocked"]
            finally:
                browser.close()
