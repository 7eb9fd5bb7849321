"""Opening Chroma, and what a failure of it means for the user.

    RAG_CHROMA_HOST set ─► HttpClient (heartbeat first: a server that is down is said so)
    otherwise           ─► PersistentClient at RAG_DATA_DIR/chroma (an emptied database refused)
    a failure ─► failure_cause: full | readonly | argument | gone | damaged | other
              ─► failure_advice: the message, with the fix for that cause

Moving the store away is advice for a damaged store only: a full disk or a bad argument leaves it
fine, and the message says so.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from rag.errors import StoreError
from rag.settings import Settings


def embedded_path(settings: Settings) -> Path:
    """The embedded Chroma directory under RAG_DATA_DIR."""
    return settings.data_dir / "chroma"


def embedded_store_exists(settings: Settings) -> bool:
    """Whether an embedded store has been created (False means no paper can be stored yet)."""
    return (embedded_path(settings) / "chroma.sqlite3").exists()


def forget_system(client: Any) -> None:
    """Make the next embedded client for this path a new one: Chroma shares one client "system"
    per path in a process, and that system's HNSW index never sees other processes' writes.
    (Clients already handed out keep theirs.)"""
    try:
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient._identifier_to_system.pop(getattr(client, "_identifier", None), None)
    except (ImportError, AttributeError, TypeError):  # another chromadb: reopen what it gives
        pass


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError in an exception's chain, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def failure_cause(exc: BaseException) -> str:
    """What kind of failure: "full", "readonly", "argument", "gone", "damaged" or "other"."""
    text = f"{type(exc).__name__}: {exc}".lower()
    os_error = _os_error(exc)
    code = os_error.errno if os_error else None
    if code == errno.ENOSPC or any(
        w in text for w in ("no space left", "disk is full", "database or disk is full", "quota")
    ):
        return "full"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS) or any(
        w in text for w in ("readonly database", "read-only file system", "permission denied")
    ):
        return "readonly"
    if "does not exist" in text and "collection" in text:
        return "gone"
    if any(
        w in text
        for w in ("malformed", "not a database", "corrupt", "no such table", "hnsw", "segment")
    ):
        return "damaged"
    if isinstance(exc, OverflowError | TypeError | ValueError):
        return "argument"
    return "other"


def failure_advice(exc: BaseException, where: str) -> str:
    """A store failure's message, with the fix for its cause (moving the store away is advice for
    a damaged store only: a full disk or a bad argument leaves it fine)."""
    what = f"{type(exc).__name__}: {exc}"
    cause = failure_cause(exc)
    if cause == "full":
        return (
            f"the disk holding {where} is full ({what}); free some space, then retry (the store "
            "is fine: an ingest cut short is completed by running it again)"
        )
    if cause == "readonly":
        return (
            f"cannot write to {where} ({what}); make it writable (permissions, a read-only "
            "mount), or set RAG_DATA_DIR to a writable directory"
        )
    if cause == "argument":
        return (
            f"the Chroma store at {where} refused the request ({what}); the store is fine: check "
            "the values given (RAG_TOP_K / --top-k is 1-50)"
        )
    if cause == "other":
        return (
            f"the Chroma store at {where} failed ({what}); retry, and only if it keeps failing "
            "(a damaged store), move it away and run `rag ingest` to rebuild"
        )
    return (
        f"the Chroma store at {where} failed ({what}); if it is corrupt, move it away and run "
        "`rag ingest` to rebuild"
    )


def open_client(settings: Settings) -> Any:
    import chromadb

    chroma_settings = chromadb.Settings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_host:
        try:
            client = chromadb.HttpClient(
                host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings
            )
            client.heartbeat()
        except Exception as exc:
            raise StoreError(
                f"cannot reach the Chroma server at {settings.chroma_host}:{settings.chroma_port} "
                f"({type(exc).__name__}); start it with `chroma run --host {settings.chroma_host} "
                f"--port {settings.chroma_port} --path DIR`, or unset RAG_CHROMA_HOST to use the "
                "embedded store"
            ) from exc
        return client
    path = embedded_path(settings)
    database = path / "chroma.sqlite3"
    if (
        database.is_file()
        and database.stat().st_size == 0
        and any(p.is_dir() for p in path.iterdir())
    ):
        # SQLite would quietly start a new, empty database here and the corpus would vanish.
        raise StoreError(
            f"the Chroma store at {path} is damaged: chroma.sqlite3 is empty but index files are "
            "there; restore it from a backup, or move the directory away and run `rag ingest` to rebuild"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(data_dir_error(settings.data_dir, exc)) from exc
    try:
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except Exception as exc:
        if failure_cause(exc) in ("full", "readonly"):
            raise StoreError(failure_advice(exc, str(path))) from exc
        raise StoreError(
            f"cannot open the Chroma store at {path} ({exc}); if another program holds it, close "
            "that program; if it is corrupt, move the directory away and run `rag ingest` to rebuild"
        ) from exc


def data_dir_error(where: Path, exc: OSError) -> str:
    """Why RAG_DATA_DIR (or a directory in it) cannot be used, and the fix."""
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) or (where.exists() and not where.is_dir()):
        blocker = next((p for p in (where, *where.parents) if p.exists()), where)
        return (
            f"RAG_DATA_DIR={where} cannot be used: {blocker} is a file, not a directory; set "
            "RAG_DATA_DIR to a directory (it is created if missing) or move the file away"
        )
    if exc.errno == errno.ENOSPC:
        return f"the disk holding RAG_DATA_DIR={where} is full ({exc.strerror}); free some space"
    return (
        f"RAG_DATA_DIR={where} cannot be written ({exc.strerror or exc}); make it writable or "
        "set RAG_DATA_DIR to a directory you can write"
    )
