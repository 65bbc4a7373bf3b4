"""The page number of a paginated view, shared by the dashboard and the operator console."""

from __future__ import annotations

from flask import request

MAX_PAGE = 100_000  # a huge page number is a huge OFFSET, which the database refuses (a 500)


def page_number() -> int:
    """`?page=N` as a whole number from 1 to MAX_PAGE; anything else is page 1 (ASCII
    digits only: int() takes '²' and 5000-digit strings, and those would be a 500)."""
    raw = request.args.get("page", "1")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6):
        return 1
    return min(max(int(raw), 1), MAX_PAGE)
