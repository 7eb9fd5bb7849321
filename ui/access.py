"""Who may add papers through the page, and which files the page may ingest.

Two rules, checked in this order before any file is opened:

1. **Ingest policy** (`RAG_UI_INGEST`). `auto` (the default) resolves to:
   - `key` when `RAG_API_KEY` is set: the page asks for that key and an ingest without it is
     refused, so a server that guards its API does not leave its one write open in the page;
   - `open` when the server binds a loopback address (127.0.0.1, ::1, localhost) and no share
     link is made: only this machine can reach the page;
   - `off` otherwise (RAG_HOST=0.0.0.0 or any other address, or `--share`, without a key):
     anyone on the network could write to the corpus, so adding papers through the page is
     switched off until RAG_API_KEY is set or RAG_UI_INGEST=open says that is intended.
   `open`, `key` and `off` may also be set explicitly (`key` without RAG_API_KEY is `off`).

2. **Uploaded files only.** Gradio's HTTP API takes a file as a path, and a client can name any
   path on the server. Only files that Gradio's upload route (`/gradio_api/upload`) stored for
   this app are accepted: the path, with symlinks and `..` resolved, must be one Gradio recorded
   as uploaded and must lie inside its upload folder. Anything else is refused by name only,
   without being opened, read or even stat-ed.

Asking questions through the page stays open to whoever can reach it; run `rag serve --api-only`
when only key holders may read the corpus (docs/ui.md).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Literal

from rag import ConfigError, Settings

Policy = Literal["open", "key", "off"]
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def is_loopback(host: str) -> bool:
    """The address can only be reached from this machine."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a hostname: it may resolve to anything, so it counts as reachable


def ingest_policy(settings: Settings, *, shared: bool = False) -> Policy:
    """What RAG_UI_INGEST resolves to for a server bound to `settings.host` (module docstring)."""
    choice = settings.ui_ingest
    if choice == "auto":
        if settings.api_key is not None:
            return "key"
        return "open" if is_loopback(settings.host) and not shared else "off"
    if choice == "key" and settings.api_key is None:
        return "off"
    return choice


def policy_note(settings: Settings, policy: Policy) -> str:
    """One line for the page under "Add papers", saying who may add and how to change it."""
    if policy == "key":
        return "Adding papers needs the server's access key (RAG_API_KEY)."
    if policy == "open":
        return ""
    if settings.ui_ingest == "key":
        return (
            "Adding papers here is off: RAG_UI_INGEST=key needs RAG_API_KEY to be set on the "
            "server. Or run `rag ingest FILE` on the server."
        )
    if settings.ui_ingest == "off":
        return "Adding papers here is off (RAG_UI_INGEST=off); run `rag ingest FILE` on the server."
    return (
        "Adding papers here is off: this server is reachable from other machines and has no "
        "access key. Set RAG_API_KEY (then type it here), or RAG_UI_INGEST=open to let anyone "
        "who can open the page add papers; or run `rag ingest FILE` on the server."
    )


def refusal(settings: Settings, policy: Policy, typed_key: str | None) -> str | None:
    """Why this ingest may not run, or None when it may. Reads no file."""
    if policy == "off":
        return policy_note(settings, policy)
    if policy == "key":
        expected = settings.api_key.get_secret_value() if settings.api_key else ""
        typed = (typed_key or "").strip()
        if not typed:
            return "Type the server's access key (RAG_API_KEY) in the 'Access key' box first."
        if not expected or not hmac.compare_digest(typed.encode(), expected.encode()):
            return "That access key is wrong; type the server's RAG_API_KEY."
    return None


def upload_folder() -> Path:
    """Gradio's upload folder (GRADIO_TEMP_DIR, else <tmp>/gradio), symlinks resolved."""
    from gradio.utils import get_upload_folder

    return Path(os.path.realpath(get_upload_folder()))


def only_uploaded(paths: Iterable[str], uploaded: Collection[str], folder: Path) -> list[str]:
    """The real paths of `paths` if every one is a file uploaded through the page; else
    ConfigError naming the first that is not. Nothing is opened: paths are only resolved."""
    known = {os.path.realpath(p) for p in uploaded}
    accepted = []
    for path in paths:
        real = os.path.realpath(path)
        inside = Path(real).is_relative_to(folder)
        if not inside or real not in known:
            raise ConfigError(
                f"{Path(path).name!r} was not uploaded through this page, so it is not read. "
                "Only files uploaded here can be added; to ingest a file that is on the server, "
                "run `rag ingest FILE` there."
            )
        accepted.append(real)
    return accepted
