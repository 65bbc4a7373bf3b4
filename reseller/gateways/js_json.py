"""JSON as JavaScript writes it, for signatures computed by Node.

NOWPayments signs `JSON.stringify(sortObject(body))` (its documented Node code: keys sorted
at every level), and Python's `json` writes the same values differently: `8.338e-05` for
what JavaScript writes `0.00008338`, `30.0` for `30`, `\\u00e9` for `é`. `stringify` writes a
value read by Python's `json` exactly as `JSON.stringify` writes the value `JSON.parse` reads
from the same text: every number is the IEEE double JavaScript reads (Python's `float` of the
same text is that double, an integer too), written by ECMAScript's Number::toString.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

# JSON.stringify's short escapes; other code units below 0x20 and lone surrogates are
# written \\u00XX, everything else as itself.
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_MAX_INDEX = 2**32 - 2  # an array index, which JavaScript objects list first, in number order


def number(value: int | float) -> str:
    """ECMAScript Number::toString of the double nearest `value` (`null` for NaN and the
    infinities, as JSON.stringify writes them)."""
    try:
        x = float(value)
    except OverflowError:  # an integer past the doubles: JavaScript reads Infinity
        return "null"
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "0"  # -0 too
    sign = "-" if x < 0 else ""
    # repr writes the shortest digits that read back as x, the nearest of them when several
    # are as short: the digits ECMAScript asks for.
    _, digit_tuple, exponent = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent += len(digit_tuple) - len(digits)
    k = len(digits)
    n = exponent + k  # x = 0.digits × 10**n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if n > 0 else '-'}{abs(n - 1)}"
    return sign + text


def string(text: str) -> str:
    """JSON.stringify of a string (well-formed: lone surrogates escaped)."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif code < 0x20 or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def stringify(value: Any) -> str:
    """JSON.stringify(value) for a value Python's `json` read (dicts, lists, str, int,
    float, bool, None), compact, objects in JavaScript's own property order."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, str):
        return string(value)
    if isinstance(value, list):
        return "[" + ",".join(stringify(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted((k for k in value if _index(k) is not None), key=_index)
        keys += [k for k in value if _index(k) is None]
        return "{" + ",".join(string(k) + ":" + stringify(value[k]) for k in keys) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def sort_object(value: Any, *, arrays: bool = False) -> Any:
    """NOWPayments' documented `sortObject`: keys sorted as JavaScript's `sort()` does (by
    UTF-16 code units) at every level. As documented it turns an array into an object keyed
    by index (`typeof [] === "object"`); `arrays=True` keeps arrays as arrays (sorting the
    objects in them) instead. `__proto__` is dropped: assigning it sets no own property."""
    if isinstance(value, list):
        if arrays:
            return [sort_object(v, arrays=True) for v in value]
        value = {str(i): v for i, v in enumerate(value)}
    if not isinstance(value, dict):
        return value
    return {
        key: sort_object(value[key], arrays=arrays)
        for key in sorted(value, key=_utf16)
        if key != "__proto__"
    }


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _index(key: str) -> int | None:
    """The array index a property key names (JavaScript lists those first), or None."""
    if not key.isascii() or not key.isdigit() or (len(key) > 1 and key[0] == "0"):
        return None
    index = int(key)
    return index if index <= _MAX_INDEX else None
