"""arXiv specifics: the category taxonomy, category filters as store keys, and paper links.

    "cs.CL cs.LG"  ─► category_keys ─► {"cat:cs.CL": True, "cat:cs": True, "cat:cs.LG": True}
    Filters(categories=["cs.CL"]) ─► where {"cat:cs.CL": True}  (Chroma metadata holds no lists)
    "cs.LG papers on …", "in computation and language" ─► categories_in ─► ["cs.LG"], ["cs.CL"]
    paper id / DOI ─► paper_url ─► https://arxiv.org/abs/<id> or https://doi.org/<doi>

The taxonomy (code -> official name) is data: rag/data/arxiv_categories.json, from arXiv's public
category list. An archive code ("cs", "cond-mat", "hep-th") stands for every category under it.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources

from rag.errors import ConfigError

KEY_PREFIX = "cat:"
_NEW_ID = re.compile(r"^\d{4}\.\d{4,5}$")  # 1706.03762, 2401.00001
_OLD_ID = re.compile(
    r"^[a-z]+(?:-[a-z]+)?(?:\.[A-Za-z]{2})?/\d{7}$"
)  # hep-th/9901001, math.GT/0309136
# Category-code-like words: cs.LG, stat.ML, hep-th, cond-mat.stat-mech, q-bio.NC
_CODE_WORD = re.compile(r"(?<![\w./-])([A-Za-z]+(?:-[A-Za-z]+)?(?:\.[A-Za-z]+(?:-[A-Za-z]+)?)?)")
_NOUNS = r"(?:papers?|articles?|preprints?|works?|studies|submissions?)"


@lru_cache(maxsize=1)
def taxonomy() -> dict[str, str]:
    """Category code -> official name, archives included ("cs" -> "Computer Science")."""
    text = (resources.files("rag") / "data" / "arxiv_categories.json").read_text("utf-8")
    return dict(json.loads(text)["categories"])


@lru_cache(maxsize=1)
def _by_lower() -> dict[str, str]:
    return {code.lower(): code for code in taxonomy()}


@lru_cache(maxsize=1)
def _by_name() -> dict[str, tuple[str, ...]]:
    """Lower-cased official name -> the codes with that name ("machine learning" -> cs.LG, stat.ML)."""
    names: dict[str, list[str]] = {}
    for code, name in taxonomy().items():
        names.setdefault(name.lower(), []).append(code)
    return {name: tuple(codes) for name, codes in names.items()}


def canonical(code: str) -> str | None:
    """The taxonomy's spelling of a code in any case ("CS.lg" -> "cs.LG"); None if unknown."""
    return _by_lower().get(code.strip().lower())


def archive_of(code: str) -> str:
    """cs.CL -> cs, cond-mat.soft -> cond-mat, hep-th -> hep-th."""
    return code.split(".", 1)[0]


def category_keys(categories: list[str]) -> dict[str, bool]:
    """Chunk metadata that a where-filter matches: one boolean key per category and archive."""
    keys: dict[str, bool] = {}
    for code in categories:
        keys[KEY_PREFIX + code] = True
        keys[KEY_PREFIX + archive_of(code)] = True
    return keys


def resolve(values: list[str]) -> list[str]:
    """Explicit filter values -> codes. A value is a code in any case ("cs.cl"), an official name
    ("Computation and Language"; a shared name gives all its codes) or, for corpora with their
    own labels, any single word; anything else is a `ConfigError` that says what to write."""
    out: list[str] = []
    for raw in values:
        for value in (v.strip() for v in raw.split(",")):
            if not value:
                continue
            codes = _by_name().get(" ".join(value.lower().split()))
            if codes is None and (code := canonical(value)) is not None:
                codes = (code,)
            if codes is None and re.fullmatch(r"[\w.\-]{1,64}", value):
                codes = (value,)  # a label of the user's own corpus
            if codes is None:
                raise ConfigError(
                    f"unknown category '{value}'; give an arXiv code such as cs.CL or its name "
                    "('Computation and Language'), several separated by commas"
                )
            out.extend(c for c in codes if c not in out)
    return out


@lru_cache(maxsize=1)
def _name_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Official names in a question, only where the wording makes them a field: a name of
    several words after "in/from/within/under/on" or before "papers"; a one-word name ("Logic",
    "Performance", "Sound" are everyday words too) only next to "papers" ("robotics papers",
    "papers in robotics")."""
    names = sorted(_by_name(), key=len, reverse=True)
    multi = "|".join(re.escape(n) for n in names if " " in n)
    single = "|".join(re.escape(n) for n in names if " " not in n)
    multi_re = re.compile(
        rf"\b(?:in|from|within|under|on)\s+(?:the\s+(?:field|area)\s+of\s+)?({multi})\b"
        rf"|\b({multi})\s+{_NOUNS}\b",
        re.I,
    )
    single_re = re.compile(
        rf"\b{_NOUNS}\s+(?:in|on|from|about)\s+({single})\b|\b({single})\s+{_NOUNS}\b", re.I
    )
    return multi_re, single_re


def categories_in(question: str) -> list[str]:
    """Categories a question names: any known code with a dot or a dash (cs.LG, hep-th, q-bio;
    bare "cs", "math", "physics" are words), and official names where worded as a field."""
    found: list[str] = []
    for match in _CODE_WORD.finditer(question):
        word = match.group(1)
        if ("." in word or "-" in word) and (code := canonical(word)) is not None:
            found.append(code)
    taken: list[tuple[int, int]] = []  # "computation and language" is not also "computation"
    for pattern in _name_patterns():
        for match in pattern.finditer(question):
            group = 1 if match.group(1) else 2
            start, end = match.span(group)
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            found.extend(_by_name()[" ".join(match.group(group).lower().split())])
    return list(dict.fromkeys(found))


def is_arxiv_id(paper_id: str) -> bool:
    return bool(_NEW_ID.match(paper_id) or _OLD_ID.match(paper_id))


def paper_url(paper_id: str, doi: str | None = None) -> str | None:
    """Where a reader opens the paper: its arXiv abstract page, else its DOI; None if neither."""
    if is_arxiv_id(paper_id):
        return f"https://arxiv.org/abs/{paper_id}"
    if doi and (first := doi.split()[0]).startswith("10."):
        return f"https://doi.org/{first}"
    return None
