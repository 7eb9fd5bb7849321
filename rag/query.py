"""Filters read from the question itself: "papers from 2023 about …", "since 2021", "recent", "by Tay",
"cs.LG papers on …", "in computation and language" (arXiv categories: rag.arxiv.categories_in).

Deterministic and conservative: a year only counts after a preposition ("in 2023", "since 2021",
"between 2020 and 2022") or before "papers" ("2017 papers"), so names like "iNaturalist-2018" or
"ImageNet 2012" never become filters.
"""

from __future__ import annotations

import datetime as dt
import re

from rag.arxiv import categories_in
from rag.retrieve import Filters
from rag.text import YEAR

_YEAR = rf"({YEAR})"
_BETWEEN = re.compile(rf"\b(?:between|from)\s+{_YEAR}\s+(?:and|to|-|–)\s+{_YEAR}\b", re.I)
_SINCE = re.compile(
    rf"\b(?:since|after|starting(?: in)?|later than)\s+{_YEAR}\b|\bfrom\s+{_YEAR}\s+on(?:wards?)?\b",
    re.I,
)
_BEFORE = re.compile(rf"\b(?:before|until|up to|prior to|earlier than)\s+{_YEAR}\b", re.I)
_IN = re.compile(
    rf"\b(?:in|during|published in|from|of)\s+{_YEAR}\b(?![-\w])"
    rf"|(?<![-\w]){_YEAR}\s+(?:papers?|articles?|preprints?|publications?)\b",  # "2017 papers"
    re.I,
)
_RECENT = re.compile(r"\b(recent|latest|newest|last (?:year|two years))\b", re.I)
_AUTHOR = re.compile(
    r"\b(?:(?:papers?|works?|articles?|studies)\s+(?:written\s+|authored\s+)?by|authored by|written by)\s+"
    r"([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)\b"
)


def parse_filters(question: str, today: dt.date | None = None) -> Filters:
    today = today or dt.date.today()
    filters = Filters()
    if m := _BETWEEN.search(question):
        a, b = sorted((int(m.group(1)), int(m.group(2))))
        filters.year_from, filters.year_to = a, b
    elif m := _SINCE.search(question):
        year = int(m.group(1) or m.group(2))
        filters.year_from = year + (1 if m.group(0).lower().startswith(("after", "later")) else 0)
    elif m := _BEFORE.search(question):
        filters.year_to = int(m.group(1)) - 1
    elif m := _IN.search(question):
        filters.year_from = filters.year_to = int(m.group(1) or m.group(2))
    elif _RECENT.search(question):
        filters.year_from = today.year - 2
    if m := _AUTHOR.search(question):
        filters.author = m.group(1)
    filters.categories = categories_in(question)
    return filters
