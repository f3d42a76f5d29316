"""Normalising free text (job titles, team names, descriptions) before it is compared.

Case, spacing and punctuation are folded, ``&`` and ``+`` read as "and", and common
abbreviations are expanded word by word, so "Snr. Social Worker", "senior social-worker"
and "SENIOR  SOCIAL WORKER" are the same key. A council's mapping file may add its own
abbreviations. Normalising never matches a value *partly*: after folding, a key is looked
up exactly or not at all.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

# Abbreviations common in English children's services job titles and team names.
COMMON_ABBREVIATIONS: dict[str, str] = {
    "snr": "senior",
    "sr": "senior",
    "mgr": "manager",
    "mngr": "manager",
    "asst": "assistant",
    "dep": "deputy",
    "dpty": "deputy",
    "sw": "social worker",
    "sws": "social workers",
    "svc": "service",
    "svcs": "services",
    "dept": "department",
    "prac": "practitioner",
    "pract": "practitioner",
    "advisor": "adviser",
    "adv": "advanced",
    "cic": "children in care",
    "cla": "children looked after",
    "yot": "youth offending team",
}

_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


def normalise(text: str, extra: Mapping[str, str] | None = None) -> str:
    """The comparison key of ``text``: folded, punctuation-free, abbreviations expanded."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = folded.replace("&", " and ").replace("+", " and ")
    folded = folded.replace("'", "").replace("\u2019", "")  # children's -> childrens
    folded = _PUNCT.sub(" ", folded)
    words: list[str] = []
    table = {**COMMON_ABBREVIATIONS, **(extra or {})}
    for word in _SPACE.split(folded.strip()):
        if word:
            words.extend(table.get(word, word).split())
    return " ".join(words)
