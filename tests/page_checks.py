"""HTML checks for every page the tests render: the WHATWG parsing rules (html5lib, the
reference implementation of the HTML parsing algorithm in Python, MIT licence) and the
references a page makes to its own ids. Offline, no Java, no network.

`html_problems(text)` lists what is wrong, `[]` for a clean page; `assert_valid_html(text,
where)` fails a test with that list. In a browser, `page_overflow(page)` says why a page
scrolls sideways (tables scroll in their own box) and `wrapped(page, selector)` which short
texts (dates, badges) broke over two lines. The customer pages' and the console's tests both
use them (tests/browser/test_storefront_pages.py, test_console_pages.py).
"""

from __future__ import annotations

import html5lib

NS = "{http://www.w3.org/1999/xhtml}"

# Attributes whose value names other elements by id (space-separated).
ID_REFERENCES = ("for", "aria-labelledby", "aria-describedby", "aria-controls", "form", "list")
# Elements a person operates; one inside another is invalid and confuses assistive tech.
INTERACTIVE = {"a", "button", "select", "textarea", "label", "details"}
INTERACTIVE_ONLY_INSIDE = {"a", "button"}
VOID_TAGS = {"input", "br", "img", "meta", "link", "hr", "source", "area", "col", "wbr"}


def _local(tag) -> str:
    return tag[len(NS) :] if isinstance(tag, str) and tag.startswith(NS) else str(tag)


def html_problems(text: str) -> list[str]:
    """Everything the checker finds wrong with the page `text`."""
    parser = html5lib.HTMLParser(strict=False, namespaceHTMLElements=True)
    tree = parser.parse(text)
    problems = []
    for (line, col), code, data in parser.errors:
        problems.append(f"line {line}:{col}: {code} {data or ''}".rstrip())
    if not text.lstrip().lower().startswith("<!doctype html>"):
        problems.append("no <!doctype html>")

    ids: dict[str, int] = {}
    elements = list(tree.iter())
    for element in elements:
        element_id = element.get("id")
        if element_id is not None:
            if not element_id.strip() or any(c.isspace() for c in element_id):
                problems.append(f"bad id {element_id!r}")
            ids[element_id] = ids.get(element_id, 0) + 1
    problems += [f"duplicate id {name!r} ({n} times)" for name, n in ids.items() if n > 1]

    parents = {child: parent for parent in elements for child in parent}
    for element in elements:
        tag = _local(element.tag)
        for attribute in ID_REFERENCES:
            for name in (element.get(attribute) or "").split():
                if name not in ids:
                    problems.append(f"<{tag} {attribute}={name!r}> names no element")
        copy = element.get("data-copy")
        if copy and copy.startswith("#") and copy[1:] not in ids:
            problems.append(f"<{tag} data-copy={copy!r}> names no element")
        if tag in INTERACTIVE_ONLY_INSIDE or (tag == "input" and element.get("type") != "hidden"):
            ancestor = parents.get(element)
            while ancestor is not None:
                outer = _local(ancestor.tag)
                if outer in INTERACTIVE_ONLY_INSIDE or (outer == "label" and tag != "input"):
                    problems.append(f"<{tag}> inside <{outer}>")
                    break
                ancestor = parents.get(ancestor)
        if tag == "form":
            ancestor = parents.get(element)
            while ancestor is not None:
                if _local(ancestor.tag) == "p":
                    problems.append("<form> inside <p>")
                    break
                ancestor = parents.get(ancestor)
        if tag == "img" and element.get("alt") is None:
            problems.append("<img> without alt")
        if tag in ("input", "select", "textarea") and element.get("type") not in (
            "hidden",
            "submit",
            "button",
        ):
            labelled = (
                element.get("aria-label")
                or element.get("aria-labelledby")
                or (element.get("id") and _labelled_by_for(elements, element.get("id")))
                or _inside(parents, element, "label")
            )
            if not labelled:
                problems.append(f"<{tag} name={element.get('name')!r}> has no label")
    return problems


def _labelled_by_for(elements, element_id: str) -> bool:
    return any(_local(e.tag) == "label" and e.get("for") == element_id for e in elements)


def _inside(parents, element, tag: str) -> bool:
    ancestor = parents.get(element)
    while ancestor is not None:
        if _local(ancestor.tag) == tag:
            return True
        ancestor = parents.get(ancestor)
    return False


def assert_valid_html(text: str, where: str = "page") -> None:
    problems = html_problems(text)
    assert not problems, f"{where}: invalid HTML:\n  " + "\n  ".join(problems[:30])


# The page is wider than the window by more than a rounding pixel: the widest culprits.
PAGE_OVERFLOW_JS = """(allowed) => {
  const root = document.documentElement;
  const wide = [...document.querySelectorAll("body *")].filter((el) => {
    const box = el.getBoundingClientRect();
    return box.right > root.clientWidth + 1 && !el.parentElement.closest(allowed);
  }).slice(0, 5).map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (typeof el.className === "string" && el.className ? "." + el.className : ""));
  return {scroll: root.scrollWidth, client: root.clientWidth, wide};
}"""

# Inline elements broken over two lines.
WRAPPED_JS = """(selector) => [...document.querySelectorAll(selector)]
  .filter((el) => el.getClientRects().length > 1)
  .slice(0, 5).map((el) => el.textContent.trim())"""

# Boxes that scroll (or may overflow) inside themselves without moving the page.
SCROLL_BOXES = ".table-wrap, pre, .service-list"


def page_overflow(page, allowed: str = SCROLL_BOXES) -> str | None:
    """Why the page scrolls sideways (None when it does not)."""
    found = page.evaluate(PAGE_OVERFLOW_JS, allowed)
    if found["scroll"] <= found["client"] + 1:
        return None
    return f"page {found['scroll']} px wide in a {found['client']} px window: {found['wide']}"


def wrapped(page, selector: str) -> list[str]:
    """The texts of elements matching `selector` that wrap onto more than one line."""
    return page.evaluate(WRAPPED_JS, selector)
