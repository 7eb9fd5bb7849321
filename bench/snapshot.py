"""`python -m bench snapshot`: ingest N records in the exact shape of the arXiv metadata snapshot.

    python -m bench snapshot --sizes 2000,10000 [--kill-at 0.5] [--seed 20] [--stores embedded,server]

For each N: write N records shaped as `arxiv-metadata-oai-snapshot.json` lines (the snapshot's
fields and their quirks: hard line breaks and leading spaces in titles and abstracts, RFC 2822
version dates, authors_parsed, space-separated categories, new-style and old-style ids, some DOIs),
their text recombined from the bundled abstracts so it reads like the corpus; then, each in a fresh
interpreter with the real model and an embedded Chroma store:

  1. a full ingest: abstracts/s and chunks/s (of the ingest itself, model loading excluded), the
     process's peak RSS, and the store's size on disk;
  2. the same ingest killed with SIGKILL once half the papers are written, then run again: the
     seconds the resumed ingest takes, and whether the store it leaves equals the uninterrupted one
     (chunk count and ids).

`--stores embedded,server` runs each size twice: into an embedded store, and into a real `chroma run`
on 127.0.0.1 (a fresh server per ingest, the resumed one on the killed one's server), so the
ingest process's own peak RSS is measured apart from the server's (sampled every 0.2 s, the
server's children included). `--kill-at 0` skips the kill and resume. `--embedder hash` puts a
cheap deterministic 384-dim embedder in the model's place (bench.snapshot_child): memory at 100k
records in minutes rather than hours; the encoder's own memory does not depend on N.

Peak RSS is the ingest call's (`ingest_peak_rss_mb`: the child's peak when `Assistant.ingest`
returns), and the 10k -> 100k flatness ratio is computed on it; the child then lists every id
of the store for its digest (the bench's check, not part of an ingest), and the whole child's
peak with that listing is reported beside it (`peak_rss_mb`, and its ratio as `whole_child`).

The bundled corpus (277 abstracts) is ingested the same way in the same run as the yardstick, once
per store kind: the snapshot rate is reported as a ratio to it. Results: bench/results/snapshot.json.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    ROOT,
    ChromaServer,
    bundled_papers,
    chroma_store,
    du_mb,
    machine,
    save,
    sentence_pool,
    table,
)
from bench.snapshot_child import CHILD, READER

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
# Author names are made up (the bundled dumps carry author counts, not names).
_FIRST = ["Ana", "Wei", "Priya", "Jonas", "Fatima", "Kenji", "Olga", "Mateo", "Aisha", "Lars"]
_FIRST += ["Mei", "Tomás", "Ngozi", "Ivan", "Sofia", "Arjun", "Yuki", "Hannah", "Omar", "Elif"]
_LAST = ["Garcia", "Chen", "Sharma", "Müller", "Okafor", "Tanaka", "Ivanova", "Rossi", "Kim"]
_LAST += ["Nguyen", "Kowalski", "Haddad", "Larsen", "Silva", "Cohen", "Dubois", "Novak", "Park"]
# Primary categories roughly as often as arXiv sees them; cross-lists drawn from all of them.
_PRIMARY = (
    ["cs.LG"] * 8 + ["cs.CV"] * 6 + ["cs.CL"] * 5 + ["cs.AI"] * 3 + ["stat.ML"] * 2
    + ["math.PR", "math.OC", "math.AG", "hep-th", "hep-ph", "quant-ph", "quant-ph"]
    + ["astro-ph.GA", "astro-ph.CO", "cond-mat.mtrl-sci", "cond-mat.stat-mech", "physics.optics"]
    + ["eess.SP", "eess.IV", "cs.RO", "cs.IR", "cs.CR", "q-bio.NC", "econ.EM", "gr-qc"]
)  # fmt: skip
_OLD_ARCHIVES = ["hep-th", "hep-ph", "quant-ph", "math", "cond-mat", "astro-ph", "gr-qc", "cs"]
_OLD_CATEGORIES = {"math": ["math.GT", "math.PR", "math.AG"], "cs": ["cs.LG", "cs.CL", "cs.AI"]}
_LICENSE = "http://arxiv.org/licenses/nonexclusive-distrib/1.0/"


def _wrap(text: str, rng: random.Random, indent: str = "") -> str:
    """The snapshot's layout: lines of ~70-80 characters, hard breaks, leading spaces."""
    width, lines, line = rng.randint(70, 80), [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return indent + ("\n" + indent).join(lines)


def _rfc2822(rng: random.Random, year: int) -> tuple[str, str]:
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    clock = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    weekday = _DAYS[(year * 372 + month * 31 + day) % 7]  # any day name: parsers must not care
    return f"{weekday}, {day} {_MONTHS[month - 1]} {year} {clock} GMT", f"{year}-{month:02d}"


def snapshot_records(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """`n` records in the snapshot's shape; 1 in 5 has an old-style id (archive/YYMMNNN)."""
    papers = bundled_papers()
    rng = random.Random(seed)
    pool = sentence_pool(papers)
    titles = [p.title.split() for p in papers]
    names = [f"{first} {last}" for first in _FIRST for last in _LAST]
    counters: dict[tuple[str, str], int] = {}
    for i in range(n):
        old = rng.random() < 0.2
        year = rng.randint(1992, 2006) if old else rng.randint(2007, 2025)
        created, ym = _rfc2822(rng, year)
        primary = rng.choice(_PRIMARY)
        if old:
            archive = rng.choice(_OLD_ARCHIVES)
            serial = counters[(archive, ym)] = counters.get((archive, ym), 0) + 1
            paper_id = f"{archive}/{ym[2:4]}{ym[5:7]}{serial:03d}"
            primary = rng.choice(_OLD_CATEGORIES.get(archive, [archive]))
        else:
            paper_id = f"{ym[2:4]}{ym[5:7]}.{i:05d}"
        cats = [primary, *rng.sample(_PRIMARY, rng.randint(0, 2))]
        authors = [rng.choice(names) for _ in range(rng.randint(1, 8))]
        parsed = [[a.split()[-1], " ".join(a.split()[:-1]), ""] for a in authors]
        a, b = rng.choice(titles), rng.choice(titles)
        title = " ".join(a[: max(1, len(a) // 2)] + b[len(b) // 2 :]) + f" ({seed}-{i})"
        versions = [{"version": "v1", "created": created}]
        for v in range(2, rng.randint(1, 3) + 1):
            versions.append({"version": f"v{v}", "created": _rfc2822(rng, min(year + v, 2025))[0]})
        update = f"{min(year + rng.randint(0, 3), 2025)}-{rng.randint(1, 12):02d}-01"
        yield {
            "id": paper_id,
            "submitter": authors[0],
            "authors": _wrap(", ".join(authors[:-1]) + f" and {authors[-1]}", rng, "  ").strip(),
            "title": _wrap(title, rng, "  ").strip(),
            "comments": f"{rng.randint(4, 40)} pages, {rng.randint(0, 12)} figures",
            "journal-ref": None,
            "doi": f"10.{rng.randint(1000, 9999)}/x{i}" if rng.random() < 0.3 else None,
            "report-no": None,
            "categories": " ".join(dict.fromkeys(cats)),
            "license": _LICENSE if rng.random() < 0.7 else None,
            "abstract": "  " + _wrap(" ".join(rng.sample(pool, rng.randint(5, 10))), rng) + "\n",
            "versions": versions,
            "update_date": update,
            "authors_parsed": parsed,
        }


def write_snapshot(n: int, seed: int, path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for record in snapshot_records(n, seed):
            handle.write(json.dumps(record) + "\n")
    return path


def _read(path: Path) -> dict[str, Any]:
    """The reading stage alone (parse, check, dedupe) in a fresh interpreter: rate, peak RSS."""
    proc = subprocess.Popen([PYTHON, "-c", READER, str(path)], stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = status
    result = json.loads(out.split("@report ", 1)[1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def _ingest(
    paths: list[Path],
    data_dir: Path,
    kill_at: int | None = None,
    server: ChromaServer | None = None,
    embedder: str = "model",
) -> dict[str, Any]:
    """One ingest in a fresh interpreter: its report, peak RSS (MiB) and wall time; with
    `kill_at`, SIGKILL once that many papers are written (the result then says when); with
    `server`, into that `chroma run` (its peak RSS so far is added); `embedder="hash"`: the
    cheap stand-in for the model (bench.snapshot_child)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0"}
    args = {"data_dir": str(data_dir), "paths": list(map(str, paths)), "embedder": embedder}
    if server is not None:
        args["port"] = server.port
    started = time.perf_counter()
    proc = subprocess.Popen(
        [PYTHON, "-c", CHILD, json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdout is not None
    out: dict[str, Any] = {}
    for raw in proc.stdout:
        line = raw.decode().strip()
        if line.startswith("@progress") and kill_at is not None:
            done = int(line.split()[1])
            if done >= kill_at:
                os.kill(proc.pid, signal.SIGKILL)
                out["killed_at_papers"] = done
                break
        elif line.startswith("@report "):
            out.update(json.loads(line.removeprefix("@report ")))
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = status
    out["wall_seconds"] = time.perf_counter() - started
    out["peak_rss_mb"] = usage.ru_maxrss / 1024
    out["exit_status"] = status
    if server is not None:
        out["server_peak_rss_mb"] = server.peak_mb
        out["disk_mb"] = du_mb(data_dir) + du_mb(server.path)
    else:
        out["disk_mb"] = du_mb(data_dir)
    return out


def measure(
    n: int,
    seed: int,
    kill_at: float,
    workdir: Path,
    kind: str,
    full_run: bool = True,
    embedder: str = "model",
) -> dict[str, Any]:
    """`full_run=False`: the kill and resume alone (compare the resumed store's chunks and
    ids_digest with an earlier run's full ingest of the same size and seed)."""
    path = workdir / f"arxiv-metadata-oai-snapshot-{n}.json"
    if not path.exists():
        write_snapshot(n, seed, path)
    full: dict[str, Any] = {}
    if full_run:
        with chroma_store(kind, workdir / f"chroma-full-{n}") as server:
            full = _ingest([path], workdir / f"full-{n}", server=server, embedder=embedder)
        full["file_mb"] = path.stat().st_size / 2**20
    result: dict[str, Any] = {"n": n, "store": kind, "full": full}
    if kill_at > 0:
        killed_dir = workdir / f"killed-{n}"
        with chroma_store(kind, workdir / f"chroma-killed-{n}") as server:
            result["killed"] = _ingest([path], killed_dir, int(n * kill_at), server, embedder)
            result["resumed"] = resumed = _ingest([path], killed_dir, None, server, embedder)
        if full:
            result["resumed_equals_full"] = (resumed.get("chunks"), resumed.get("ids_digest")) == (
                full.get("chunks"),
                full.get("ids_digest"),
            )
    for d in workdir.glob(f"*-{n}"):
        shutil.rmtree(d, ignore_errors=True)
    return result


def _report_reads(reads: list[dict[str, Any]]) -> None:
    if reads:
        table(
            "reading alone (parse, check, dedupe; no encoding)",
            ["records", "file MiB", "seconds", "records/s", "peak RSS MiB"],
            [
                [r["n"], r["file_mb"], r["seconds"], r["papers"] / r["seconds"], r["peak_rss_mb"]]
                for r in reads
            ],
        )


def main(
    sizes: list[int],
    kill_at: float = 0.5,
    seed: int = 20,
    read_sizes: list[int] | None = None,
    name: str = "snapshot",
    stores: Sequence[str] = ("embedded",),
    full_run: bool = True,
    embedder: str = "model",
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="rag-bench-snapshot-"))
    reads = []
    for n in read_sizes or []:
        print(f"reading alone, {n:,} records ...", flush=True)
        path = write_snapshot(n, seed, workdir / f"read-{n}.json")
        reads.append({"n": n, "file_mb": path.stat().st_size / 2**20, **_read(path)})
        path.unlink()
        print(
            f"  {reads[-1]['papers'] / reads[-1]['seconds']:,.0f} records/s, peak RSS "
            f"{reads[-1]['peak_rss_mb']:.0f} MiB",
            flush=True,
        )
    if not sizes:  # the reading stage alone
        _report_reads(reads)
        print(f"written {save('snapshot-read', {'machine': machine(), 'reading_alone': reads})}")
        return
    from rag.corpus import bundled_corpus_dir

    bundled: dict[str, dict[str, Any]] = {}
    runs: list[dict[str, Any]] = []
    loads = [list(os.getloadavg())]
    for kind in stores:
        print(f"bundled corpus (yardstick), {kind} store ...", flush=True)
        with chroma_store(kind, workdir / "chroma-bundled") as server:
            bundled[kind] = _ingest(
                [bundled_corpus_dir()], workdir / "bundled", server=server, embedder=embedder
            )
        shutil.rmtree(workdir / "bundled", ignore_errors=True)
        shutil.rmtree(workdir / "chroma-bundled", ignore_errors=True)
        for n in sizes:
            print(f"snapshot shape, {n:,} records, {kind} store ...", flush=True)
            runs.append(measure(n, seed, kill_at, workdir, kind, full_run, embedder))
            loads.append(list(os.getloadavg()))
            full = runs[-1]["full"] or runs[-1]["resumed"]
            print(
                f"  {full['papers'] / full['seconds']:.1f} abstracts/s, "
                f"{full['chunks'] / full['seconds']:.1f} chunks/s, ingest peak RSS "
                f"{_ingest_peak(full):.1f} MiB (before the BM25 rebuild "
                f"{full.get('stream_peak_rss_mb', 0):.1f}; server "
                f"{full.get('server_peak_rss_mb', 0):.0f}); with the bench's own id listing "
                f"after it (its check, not part of an ingest) {full['peak_rss_mb']:.1f}; "
                f"load {loads[-1]}",
                flush=True,
            )
            _save(name, seed, kill_at, stores, embedder, loads, bundled, runs, reads)  # so far
    shutil.rmtree(workdir, ignore_errors=True)
    _report(bundled, runs)
    _report_reads(reads)
    out = _save(name, seed, kill_at, stores, embedder, loads, bundled, runs, reads)
    print(f"written {out}")


def _save(
    name: str,
    seed: int,
    kill_at: float,
    stores: Sequence[str],
    embedder: str,
    *results: Any,
) -> Path:
    keys = ["load_avg_after_each", "bundled", "runs", "reading_alone"]
    data = {"seed": seed, "kill_at": kill_at, "stores": list(stores), "embedder": embedder}
    data.update(zip(keys, results, strict=True))
    data["peak_rss_ratio"] = {
        kind: ratio for kind in stores if (ratio := _ratio(data["runs"], kind))
    }
    return save(name, data)


def _ingest_peak(full: dict[str, Any]) -> float:
    """The ingest call's peak RSS (MiB): the child's peak before the bench lists the store's
    ids for its digest (results from before that figure was kept: the whole child's)."""
    return float(full.get("ingest_peak_rss_mb") or full["peak_rss_mb"])


def _ratio(runs: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """Peak RSS of the largest size over the smallest, for `kind`'s full ingests: the ingest
    call's (the target's figure) and the whole child's (the bench's id listing included)."""
    sized = [r for r in runs if r["store"] == kind and r["full"]]
    if len(sized) < 2:
        return None
    small, large = sized[0]["full"], sized[-1]["full"]
    return {
        "sizes": [sized[0]["n"], sized[-1]["n"]],
        "ingest": _ingest_peak(large) / _ingest_peak(small),
        "whole_child": large["peak_rss_mb"] / small["peak_rss_mb"],
    }


def _report(bundled: dict[str, dict[str, Any]], runs: list[dict[str, Any]]) -> None:
    rows = []
    for kind, base in bundled.items():
        base_rate = base["chunks"] / base["seconds"]
        for run in [{"n": "bundled", "store": kind, "full": base}] + [
            r for r in runs if r["store"] == kind
        ]:
            full, resumed = run["full"], run.get("resumed")
            if not full:  # the kill and resume alone
                full = {k: float("nan") for k in ("chunks", "seconds", "papers", "peak_rss_mb")}
                full["disk_mb"] = resumed["disk_mb"] if resumed else float("nan")
            rate = full["chunks"] / full["seconds"]
            rows.append(
                [
                    f"{run['n']:,}" if isinstance(run["n"], int) else run["n"],
                    kind,
                    full["chunks"],
                    full["seconds"],
                    full["papers"] / full["seconds"],
                    rate,
                    rate / base_rate,
                    _ingest_peak(full),
                    full["peak_rss_mb"],
                    full.get("server_peak_rss_mb", ""),
                    full["disk_mb"],
                    f"{resumed['seconds']:.1f} s ({run['killed'].get('killed_at_papers')} killed)"
                    if resumed
                    else "",
                    {True: "yes", False: "NO"}.get(run.get("resumed_equals_full"), ""),
                ]
            )
        ratio = _ratio(runs, kind)
        if ratio:
            large, small = (f"{n:,}" for n in reversed(ratio["sizes"]))
            print(
                f"{kind}: ingest peak RSS {large} / {small}: {ratio['ingest']:.3f}x (the whole "
                f"child, the bench's own id listing after the ingest included: "
                f"{ratio['whole_child']:.3f}x)"
            )
    table(
        "arXiv snapshot shape: ingest, memory, resume",
        [
            "records",
            "store",
            "chunks",
            "ingest s",
            "abstracts/s",
            "chunks/s",
            "vs bundled",
            "ingest peak RSS MiB",
            "peak with the bench's id listing (its check) MiB",
            "server peak RSS MiB",
            "disk MB",
            "resume after kill",
            "same store",
        ],
        rows,
    )


if __name__ == "__main__":  # the child needs none of this; `python -m bench snapshot` calls main
    main([int(s) for s in sys.argv[1].split(",")] if len(sys.argv) > 1 else [2000])
