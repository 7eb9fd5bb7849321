"""CORS for /v1 (RAG_API_CORS_ORIGINS): the preflight and headers over HTTP in both serving modes,
and a real browser: a page on another origin calls the served API with `fetch` (Debian's
chromium driven by Playwright), allowed when its origin is listed, blocked when it is not."""

from __future__ import annotations

import shutil
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import error_of
from conftest import served
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from rag import Assistant, Settings
from rag.api import create_api

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api_assistant(real_store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    data_dir = tmp_path_factory.mktemp("api-cors") / "store"
    shutil.copytree(real_store_dir, data_dir)
    return Assistant(Settings(data_dir=data_dir, _env_file=None))


def serving(assistant: Assistant) -> AbstractContextManager[str]:
    return served(create_api(assistant), startup=60, lifespan="off")


def sibling(assistant: Assistant, **overrides: Any) -> Assistant:
    settings = assistant.settings.with_overrides(**overrides)
    return Assistant(settings, embedder=assistant.embedder, store=assistant.store)


CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
KEY = "sk-rag-browser-cors-5e6f"
ORIGIN = "https://notebook.example.org"
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


# ------------------------------------------------------------------------------------- CORS
def cors_checks(url: str, key: str | None) -> None:
    preflight = httpx.options(
        f"{url}/v1/chat/completions",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "x-stainless-os" in preflight.headers["access-control-allow-headers"].lower()
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    models = httpx.get(f"{url}/v1/models", headers={"Origin": ORIGIN, **auth})
    assert models.status_code == 200 and models.headers["access-control-allow-origin"] == ORIGIN
    if key:  # a refusal is readable by the page too
        refused = httpx.get(f"{url}/v1/models", headers={"Origin": ORIGIN})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == ORIGIN
    stranger = httpx.options(
        f"{url}/v1/models",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert stranger.status_code == 400 and "access-control-allow-origin" not in stranger.headers


def test_cors_api_only(api_assistant: Assistant) -> None:
    key = "sk-rag-cors-test-0a1b2c"
    allowed = sibling(
        api_assistant, api_cors_origins=[ORIGIN, "http://localhost:3000"], api_key=key
    )
    with serving(allowed) as url:
        cors_checks(url, key)
    with serving(api_assistant) as url:  # none by default
        plain = httpx.get(f"{url}/v1/models", headers={"Origin": ORIGIN})
        assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers
        preflight = httpx.options(
            f"{url}/v1/models", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
        )
        assert "access-control-allow-origin" not in preflight.headers
        refused = error_of(preflight, 405)
        assert (
            refused["code"] == "cors_not_enabled" and "RAG_API_CORS_ORIGINS" in refused["message"]
        )


def test_cors_with_the_ui_applies_to_v1_only(api_assistant: Assistant) -> None:
    from rag_ui.server import build_app

    allowed = sibling(api_assistant, api_cors_origins=ORIGIN)
    with served(build_app(allowed, ui=True, api=True), startup=120) as url:
        cors_checks(url, None)
        page = httpx.get(f"{url}/", headers={"Origin": ORIGIN})
        assert page.status_code == 200 and "access-control-allow-origin" not in page.headers


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
