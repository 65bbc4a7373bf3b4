"""Money as integers.

Every amount we store (balances, ledger rows, prices, upstream costs) is an integer number
of *money units*: 1/10,000 of the currency (`SCALE`). Customer-facing amounts (balances,
retail prices, credits) are always whole cents; the finer unit exists because upstream
costs can carry sub-cent digits (e.g. 0.0545 USD) and margins must be exact.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation

SCALE = 10_000
CENT = SCALE // 100
MAX_UNITS = 2**63 - 1  # the most a BIGINT column holds


class BadAmount(ValueError):
    """Text that is not a usable amount."""


def to_units(value: Decimal | str | int | float, *, round_up: bool = False) -> int:
    """Money units for an amount in currency (`Decimal("1.30")` → 13000).

    Sub-unit digits are rounded half-up, or up when `round_up` (upstream costs: never
    under-estimate what we pay).
    """
    try:
        dec = Decimal(str(value))
    except InvalidOperation:
        raise BadAmount(f"not an amount: {value!r}") from None
    # Bounded before scaling: `1e999999 * SCALE` overflows the decimal context.
    if not dec.is_finite() or abs(dec) > MAX_UNITS:
        raise BadAmount(f"not an amount: {value!r}")
    rounding = ROUND_CEILING if round_up else ROUND_HALF_UP
    units = int((dec * SCALE).to_integral_value(rounding=rounding))
    if abs(units) > MAX_UNITS:
        raise BadAmount(f"not an amount: {value!r}")
    return units


def parse_amount(text: str, *, allow_negative: bool = False) -> int:
    """Parse an amount typed by a person (`10.50`, `-3`) into money units.

    At most two decimals (whole cents). Raises BadAmount with a readable message.
    """
    raw = (text or "").strip().replace(",", ".")
    try:
        dec = Decimal(raw)
    except InvalidOperation:
        raise BadAmount(f"{text!r} is not an amount; write it like 10.50") from None
    if not dec.is_finite():
        raise BadAmount(f"{text!r} is not an amount; write it like 10.50")
    if abs(dec) > Decimal("1000000000"):  # first: quantize() fails past 28 digits
        raise BadAmount("the amount is too large")
    if dec != dec.quantize(Decimal("0.01")):
        raise BadAmount(f"{text!r} has more than two decimals")
    if dec < 0 and not allow_negative:
        raise BadAmount("the amount must not be negative")
    return to_units(dec)


def to_decimal(units: int) -> Decimal:
    return Decimal(units) / SCALE


def round_up_to_cent(units: int) -> int:
    """The smallest whole-cent amount ≥ units."""
    return -(-units // CENT) * CENT


def format_amount(units: int, places: int = 2) -> str:
    """`254000` → `"25.40"`; always with a decimal point (clients parse it)."""
    quant = Decimal(1).scaleb(-places)
    return str(to_decimal(units).quantize(quant, rounding=ROUND_HALF_UP))


def format_cost(units: int) -> str:
    """An amount with as many decimals as it needs (at least two): `545` → `"0.0545"`."""
    dec = to_decimal(units)
    text = format(dec.normalize(), "f")
    if "." not in text:
        text += ".00"
    elif len(text.split(".")[1]) < 2:
        text += "0"
    return text
