"""The `rag` command line: ingest / ask / chat / info / serve / eval. Thin: it calls `Assistant`.

Imports of the heavy stack happen inside the commands so `rag --help` stays fast. A `RagError`
becomes one red line and exit code 1 (2 for a partial ingest); a traceback means a bug.

The CLI is itself a front-end, and the one place that wires the others in: `serve` imports
`rag_ui.server` (the ui/ folder) and `eval` imports `rag_eval.run` (eval/), inside the commands.
No other module of rag/ imports a front-end (tests/test_layers.py checks).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from rag.assistant import Assistant
    from rag.settings import Settings

app = typer.Typer(
    name="rag",
    help="Ask questions about research-paper abstracts; every sentence cited and checked.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

EXIT_PARTIAL = 2

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a setting for this run: key=value (e.g. top_k=8)."),
]


def _settings(overrides: list[str] | None = None) -> Settings:
    from rag.errors import ConfigError
    from rag.settings import Settings

    values: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        key = key.strip().lower().removeprefix("rag_")
        if key not in Settings.model_fields:
            raise ConfigError(
                f"--set: unknown setting '{key}'; valid keys: {', '.join(sorted(Settings.model_fields))}"
            )
        values[key] = value
    try:
        base = Settings()
        return base.with_overrides(**values) if values else base
    except Exception as exc:  # pydantic.ValidationError
        raise ConfigError(
            f"invalid setting: {exc}".splitlines()[0] + f" ({_first_error(exc)})"
        ) from exc


def _first_error(exc: Exception) -> str:
    """ "RAG_PORT: Input should be ..." (the variable a user sets, not the field name)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{'RAG_' + where.upper() if where else 'settings'}: {first.get('msg')}"
    return str(exc)


def _check_range(value: int | None, field: str, option: str) -> None:
    """A CLI number within the bounds its setting has (rag.settings.Settings)."""
    if value is None:
        return
    from rag.errors import ConfigError
    from rag.settings import Settings

    meta = Settings.model_fields[field].metadata
    low = next((m.ge for m in meta if hasattr(m, "ge")), None)
    high = next((m.le for m in meta if hasattr(m, "le")), None)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{option} must be between {low} and {high}, got {value}")


def _assistant(overrides: list[str] | None = None) -> Assistant:
    from rag.assistant import Assistant

    return Assistant(_settings(overrides))


def _run(fn: Any) -> Any:
    from rag.errors import RagError

    try:
        return fn()
    except RagError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


@app.callback()
def main_callback(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def do_ingest(
    assistant: Assistant, paths: list[Path] | None, rebuild: bool = False, ray: str | None = None
) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("papers {task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("ingest", total=None, rate="")

        def progress(done: int, total: int | None) -> None:
            # The total is estimated from the bytes read so far (exact at the end), so the ETA
            # is there from the first batch without a counting pass over the files.
            elapsed = bar.tasks[task].elapsed or 0.0
            rate = f"({done / elapsed:,.0f}/s)" if done and elapsed > 1 else ""
            bar.update(task, completed=done, total=total, rate=rate)

        return assistant.ingest(paths or None, rebuild=rebuild, progress=progress, ray=ray)


@app.command()
def ingest(
    paths: Annotated[
        list[str] | None, typer.Argument(help="Files or directories (default: bundled corpus).")
    ] = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Drop the collection and rebuild it.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="auto|local|ADDRESS",
            help="Encode on a Ray cluster (extra `ray`): auto = the running one, local = a private "
            "one on 127.0.0.1, or its address; default RAG_RAY_ADDRESS (docs/scale.md).",
        ),
    ] = None,
    overrides: SetOption = None,
) -> None:
    """Add papers to the store. Repeating it adds nothing; changed abstracts are replaced."""

    def go() -> Any:
        from rag.errors import ConfigError

        if paths is not None and any(not str(p).strip() for p in paths):  # "" would mean "."
            raise ConfigError(
                "an empty path was given; name a file or directory to ingest (`.` for the "
                "current directory)"
            )
        return do_ingest(_assistant(overrides), [Path(p) for p in paths or []], rebuild, ray)

    report = _run(go)
    if as_json:
        console.print_json(report.model_dump_json())
    else:
        console.print(
            f"added {report.added}, updated {report.updated}, unchanged {report.skipped}, "
            f"duplicates {report.duplicates}, failed {len(report.failed)} "
            f"({report.chunk_counts} in {report.seconds:.1f}s)"
        )
        for change in report.replaced:  # a known id whose title or abstract changed
            err.print(
                "[cyan]replaced:[/cyan]", escape(str(change)), highlight=False, soft_wrap=True
            )
        for failure in report.failed:
            err.print(
                "[yellow]failed:[/yellow]", escape(str(failure)), highlight=False, soft_wrap=True
            )
    if report.failed:
        if not as_json:
            err.print("partial ingest: the good records went in; fix the lines above and rerun.")
        raise typer.Exit(EXIT_PARTIAL)


def _print_answer(answer: Any, show_sources: bool = True) -> None:
    style = "yellow" if answer.abstained else ""
    console.print(answer.text, style=style, highlight=False, markup=False)
    if answer.notice:
        err.print(f"[yellow]note:[/yellow] {answer.notice}", highlight=False)
    if show_sources:
        cited = {n for s in answer.sentences for n in s.citations}
        for src in answer.sources:
            if cited and src.number not in cited:
                continue
            date = f" ({src.published})" if src.published else ""
            link = f"  {src.url}" if src.url else ""
            console.print(
                f"  [{src.number}] {src.title}{date}  score {src.score:.2f}{link}",
                highlight=False,
                markup=False,
            )
    console.print(f"[dim]backend: {answer.backend}[/dim]")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your question.")],
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", help="Number of sources.")] = None,
    year_from: Annotated[int | None, typer.Option(help="Only papers from this year on.")] = None,
    year_to: Annotated[int | None, typer.Option(help="Only papers up to this year.")] = None,
    author: Annotated[str | None, typer.Option(help="Only papers with this author.")] = None,
    category: Annotated[
        list[str] | None,
        typer.Option(help="Only papers in this arXiv category (cs.CL, or its name); repeatable."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole Answer as JSON.")
    ] = False,
    overrides: SetOption = None,
) -> None:
    """Answer one question with cited sources (or say the corpus does not say)."""
    from rag.retrieve import Filters

    def go() -> Any:
        from rag.arxiv import resolve

        filters = Filters(
            year_from=year_from, year_to=year_to, author=author, categories=resolve(category or [])
        )
        from rag.assistant import _check_question

        _check_question(question)  # before the store opens: bad text is refused at once
        _check_range(top_k, "top_k", "--top-k")
        assistant = _assistant(overrides)
        _ensure_ingested(assistant)
        return assistant.ask(question, top_k, filters=None if filters.is_empty() else filters)

    answer = _run(go)
    if as_json:
        sys.stdout.write(answer.model_dump_json(indent=2) + "\n")
    else:
        _print_answer(answer)


def _ensure_ingested(assistant: Assistant) -> None:
    if assistant.is_empty():
        err.print("The store is empty: ingesting the bundled corpus first…")
        do_ingest(assistant, None)


@app.command()
def chat(overrides: SetOption = None) -> None:
    """A conversation in the terminal; follow-up questions keep their context."""

    def go() -> None:
        assistant = _assistant(overrides)
        _ensure_ingested(assistant)
        history: list[dict[str, Any]] = []
        console.print("Ask about the papers. Empty line or Ctrl-D to quit.", style="dim")
        while True:
            try:
                message = console.input("[bold]you>[/bold] ").strip()
            except EOFError:
                break
            except UnicodeDecodeError as exc:  # a terminal that is not UTF-8
                err.print(
                    f"[red]error:[/red] the line is not UTF-8 (byte 0x{exc.object[exc.start]:02x}); "
                    "set your terminal to UTF-8 (e.g. LANG=C.UTF-8) and type it again"
                )
                continue
            if not message:
                break
            answer = None
            for item in assistant.ask_stream(message, history=history):
                if isinstance(item, str):
                    continue
                answer = item
            assert answer is not None
            _print_answer(answer)
            history.append({"role": "user", "content": message})
            cited = [
                s.title
                for s in answer.sources
                if any(s.number in x.citations for x in answer.sentences)
            ]
            history.append({"role": "assistant", "content": answer.text, "sources": cited})

    _run(go)


@app.command()
def info(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    overrides: SetOption = None,
) -> None:
    """What is in the store and how rag is configured."""
    data = _run(lambda: _assistant(overrides).info())
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    for key, value in data.items():
        console.print(f"{key:>16}: {value}", highlight=False)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 7860).")] = None,
    api: Annotated[
        bool, typer.Option("--api", help="Also serve the OpenAI-compatible API under /v1.")
    ] = False,
    api_only: Annotated[
        bool, typer.Option("--api-only", help="Serve only the API, no UI.")
    ] = False,
    share: Annotated[
        bool, typer.Option("--share", help="Ask Gradio for a public share link.")
    ] = False,
    ingest_if_empty: Annotated[
        bool, typer.Option(help="Ingest the bundled corpus when the store is empty.")
    ] = True,
    overrides: SetOption = None,
) -> None:
    """Start the chat UI (and/or the OpenAI-compatible API) on 127.0.0.1."""

    def go() -> None:
        _check_range(port, "port", "--port")
        extra = list(overrides or [])
        if host:
            extra.append(f"host={host}")
        if port is not None:
            extra.append(f"port={port}")
        assistant = _assistant(extra)
        if ingest_if_empty:
            _ensure_ingested(assistant)
        from rag_ui.server import serve as run_server

        run_server(assistant, ui=not api_only, api=api or api_only, share=share)

    _run(go)


@app.command(name="eval", context_settings={"allow_extra_args": False})
def eval_cmd(
    dataset: Annotated[
        Path | None, typer.Option(help="Questions JSONL (default: the bundled set).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="dev | test | holdout (with --dataset eval/data/holdout.jsonl) | all (default all)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default eval/runs/<time>).")
    ] = None,
    compare: Annotated[
        list[Path] | None, typer.Option(help="Compare two run dirs: --compare A --compare B.")
    ] = None,
    overrides: SetOption = None,
) -> None:
    """Grounding eval: retrieval, citations, faithfulness, abstention, latency -> report."""

    def go() -> None:
        from rag_eval.run import main as eval_main

        eval_main(
            settings=_settings(overrides),
            dataset=dataset,
            limit=limit,
            split=split,
            out=out,
            compare=compare,
            console=console,
        )

    _run(go)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
