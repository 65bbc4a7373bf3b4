"""Languages: one set of gettext catalogues (Flask-Babel) for every door.

The catalogues are `reseller/translations/<lang>/LC_MESSAGES/messages.po` (compiled to .mo by
`make install`; `make translations-update` extracts new strings). A web request's language
comes from `select_locale`; a front-end that knows its user's language (the Telegram bot)
renders inside `in_language(code)`.
"""

from __future__ import annotations

import contextlib

from flask import g
from flask_babel import force_locale

DEFAULT = "en"
# Code → the language's own name (what a picker shows).
LANGUAGES = {"en": "English", "ru": "Русский", "zh": "中文", "es": "Español"}


def supported(code: str | None) -> str | None:
    """Our language for a code as clients send it ("ru", "ru-RU", "zh-hans", "es_419",
    "pt-br"…), or None when we have none for it."""
    if not code:
        return None
    base = code.strip().replace("_", "-").split("-", 1)[0].lower()
    return base if base in LANGUAGES else None


def select_locale() -> str:
    """Flask-Babel's locale selector: the language a request chose (`g.language`), else the
    default. (How web pages choose — a cookie, the browser's preference — is the pages'
    own decision: they set `g.language`.)"""
    return g.get("language") or DEFAULT


@contextlib.contextmanager
def in_language(code: str | None):
    """Render (gettext, formats) in `code`'s language, our default when we lack it."""
    with force_locale(supported(code) or DEFAULT):
        yield
