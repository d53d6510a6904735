"""Phrases the rules' one-sentence messages share."""

from __future__ import annotations


def join_phrases(shown: list[str], limit: int = 3) -> str:
    """`a`, `b` and `c`; past `limit` items the rest are counted ("`a`, `b`, `c` and 2 more")."""
    more = len(shown) - limit
    shown = shown[:limit] + ([f"{more} more"] if more > 0 else [])
    if len(shown) <= 1:
        return "".join(shown)
    return ", ".join(shown[:-1]) + " and " + shown[-1]
