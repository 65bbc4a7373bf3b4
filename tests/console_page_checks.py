"""Checks every console page must pass: valid HTML (html5lib, the WHATWG parsing algorithm,
reports every parse error: a <form> inside a <p>, a stray end tag, a duplicate attribute),
unique ids, and in a browser no sideways scroll of the page itself (tables scroll in their
own box)."""

from __future__ import annotations

import re

import html5lib

# The page is wider than the window by more than a rounding pixel.
PAGE_OVERFLOW_JS = """() => {
  const root = document.documentElement;
  const wide = [...document.querySelectorAll("body *")].filter((el) => {
    const box = el.getBoundingClientRect();
    return box.right > root.clientWidth + 1 && !el.parentElement.closest(".table-wrap");
  }).slice(0, 5).map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (typeof el.className === "string" && el.className ? "." + el.className : ""));
  return {scroll: root.scrollWidth, client: root.clientWidth, wide};
}"""

# Inline elements (dates, badges) broken over two lines.
WRAPPED_JS = """(selector) => [...document.querySelectorAll(selector)]
  .filter((el) => el.getClientRects().length > 1)
  .slice(0, 5).map((el) => el.textContent.trim())"""


def html_errors(html: str) -> list[str]:
    """Every HTML parse error of `html` and every id used twice, as readable lines."""
    parser = html5lib.HTMLParser(strict=False, namespaceHTMLElements=False)
    parser.parse(html)
    lines = html.splitlines()
    problems = []
    for (line, col), code, data in parser.errors:
        context = lines[line - 1][max(0, col - 60) : col + 20] if 0 < line <= len(lines) else ""
        problems.append(f"line {line}:{col} {code} {data or ''}: {context.strip()}")
    ids = re.findall(r'\sid="([^"]+)"', html)
    problems += [f"duplicate id {i!r}" for i in sorted({i for i in ids if ids.count(i) > 1})]
    return problems


def page_overflow(page) -> str | None:
    """Why the page scrolls sideways (None when it does not)."""
    found = page.evaluate(PAGE_OVERFLOW_JS)
    if found["scroll"] <= found["client"] + 1:
        return None
    return f"page {found['scroll']} px wide in a {found['client']} px window: {found['wide']}"


def wrapped(page, selector: str) -> list[str]:
    """The texts of elements matching `selector` that wrap onto more than one line."""
    return page.evaluate(WRAPPED_JS, selector)
