"""`rag serve`: the Gradio UI and/or the OpenAI-compatible API on one FastAPI app (uvicorn).

A front-end, so it lives beside the UI (installed as `rag_ui.server`): the library never imports
it; `rag serve` (rag/cli.py) does.

Binds RAG_HOST (127.0.0.1 by default); a public Gradio share link only with --share.
"""

from __future__ import annotations

import logging
from typing import Any

from rag.assistant import Assistant

log = logging.getLogger(__name__)


def build_app(assistant: Assistant, *, ui: bool = True, api: bool = False) -> Any:
    """One ASGI app: the API under /v1 (+ /healthz) and the UI at /."""
    from fastapi import FastAPI

    if api:
        from rag.api import create_api

        app = create_api(assistant)
    else:
        app = FastAPI(title="rag")
    if ui:
        import gradio as gr

        from .app import build_ui, max_upload_bytes
        from .theme import ui_options

        blocks = build_ui(assistant).queue()
        app = gr.mount_gradio_app(
            app,
            blocks,
            path="/",
            max_file_size=max_upload_bytes(assistant),
            footer_links=["api", "settings"],
            run_history=False,  # questions stay out of the browser's storage
            **ui_options(),
        )
        _check_file_inputs(blocks)
    return app


def _check_file_inputs(blocks: Any) -> None:
    """Make Gradio refuse, before it copies anything, a file input that was not uploaded.

    Gradio checks that a file named in an event's input lies in its upload folder only for an app
    that has been `launch()`ed (`processing_utils._check_allowed` returns early otherwise); a
    mounted app is never launched, so a client could name any server path and Gradio would copy
    that file into its cache before the handler ran. Marking the mounted Blocks as launched turns
    the check on (the flag means nothing else to Gradio 6). The ingest handler checks again, on
    its own (ui/access.py), so an upgrade that changes this still reads no file."""
    blocks.has_launched = True


def serve(assistant: Assistant, *, ui: bool = True, api: bool = False, share: bool = False) -> None:
    settings = assistant.settings
    if share and ui:
        from .app import build_ui, max_upload_bytes
        from .theme import ui_options

        build_ui(assistant, shared=True).queue().launch(
            server_name=settings.host,
            server_port=settings.port,
            share=True,
            max_file_size=max_upload_bytes(assistant),
            footer_links=["api", "settings"],
            **ui_options(),
        )
        return
    import uvicorn

    app = build_app(assistant, ui=ui, api=api)
    log.info("serving on http://%s:%d", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
