"""Reading a corpus file as lines of text: the encoding found (UTF-8, or UTF-16 with its mark),
line ends as `bytes.splitlines` cuts them, bad bytes reported per line, and a UTF-8 file streamed a
block at a time so memory holds one line whatever the file's size.

    path ─► head (8 KiB): byte-order mark? UTF-32 / unmarked UTF-16 / binary ─► one CorpusError
         ─► UTF-8: blocks of 1 MiB ─► lines ─► (line number, text | CorpusError)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from rag.errors import CorpusError

OnRead = Callable[[int], None] | None  # told the bytes of each block read

# Byte-order marks of the encodings besides UTF-8 that text editors save (UTF-32 first: its
# little-endian mark begins with UTF-16's).
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
_LINE_END = re.compile(r"\r\n|\r|\n")


def _utf16_without_bom(head: bytes) -> bool:
    """NULs in every other byte and nowhere else: UTF-16 text saved without a byte-order mark."""
    even, odd = head[0::2], head[1::2]
    if len(head) < 4:
        return False
    return (odd.count(0) > 0.8 * len(odd) and even.count(0) == 0) or (
        even.count(0) > 0.8 * len(even) and odd.count(0) == 0
    )


def decoded_lines(path: Path, on_read: OnRead = None) -> Iterator[tuple[int, str | CorpusError]]:
    """Yield (line number, text) with a BOM dropped, CRLF handled and bad bytes reported per line.
    UTF-16 with a byte-order mark is decoded; UTF-32, and UTF-16 without a mark, are named.

    UTF-8 text is streamed a block at a time, so memory holds one line, whatever the file's size;
    `on_read` is told the size of each block read (for progress)."""
    with path.open("rb") as handle:
        head = handle.read(8192)
        if on_read:
            on_read(len(head))
        for bom, codec in _BOMS:
            if head.startswith(bom):
                if codec == "UTF-32":
                    yield (
                        0,
                        CorpusError(
                            "this file is UTF-32 text; re-save it as UTF-8",
                            file=str(path),
                            line=None,
                        ),
                    )
                    return
                yield from _utf16_lines(path, (head + handle.read())[len(bom) :], codec)
                return
        if b"\x00" in head and _utf16_without_bom(head):
            yield (
                0,
                CorpusError(
                    "this looks like UTF-16 text without a byte-order mark; re-save it as UTF-8",
                    file=str(path),
                ),
            )
            return
        if b"\x00" in head:
            yield (
                0,
                CorpusError(
                    "this is a binary file, not text; give rag a .txt, .jsonl, .json or .csv file",
                    file=str(path),
                ),
            )
            return
        if head.startswith(b"\xef\xbb\xbf"):
            head = head[3:]
        for number, raw in enumerate(byte_lines(head, handle, on_read), start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield (
                    number,
                    CorpusError(
                        f"bytes that are not UTF-8 at column {exc.start + 1}; re-save the file as "
                        "UTF-8",
                        file=str(path),
                        line=number,
                    ),
                )


def byte_lines(
    head: bytes, handle: BinaryIO, on_read: OnRead = None, block: int = 1 << 20
) -> Iterator[bytes]:
    """The lines of `head` + the rest of `handle`, split as `bytes.splitlines` splits (\\n, \\r,
    \\r\\n), read a block at a time: a line end cut by a block boundary is joined first."""
    rest = head
    while True:
        chunk = handle.read(block)
        if on_read and chunk:
            on_read(len(chunk))
        data = rest + chunk
        lines = data.splitlines(keepends=True)
        # The last piece may be a line still being read, or a CR whose LF is in the next block.
        rest = lines.pop() if lines and chunk and not lines[-1].endswith(b"\n") else b""
        for line in lines:
            yield line.rstrip(b"\r\n")  # one line end at most: splitlines cut at each
        if not chunk:
            return


def _utf16_lines(path: Path, data: bytes, codec: str) -> Iterator[tuple[int, str | CorpusError]]:
    """UTF-16 text (its mark already dropped), split at the same line ends as UTF-8 text."""
    text = data[: len(data) // 2 * 2].decode(codec, errors="surrogatepass")  # lone surrogates:
    lines = _LINE_END.split(text)  # an error for their record (rag.records)
    if lines and not lines[-1]:
        lines.pop()  # as bytes.splitlines: a final line end opens no line
    yield from enumerate(lines, start=1)
