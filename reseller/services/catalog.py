"""Countries and services on sale, and the upstream price cache.

Country ids are the upstream's (SMS-Activate numbering); the ISO 3166 alpha-2 mapping is
ours (`ISO_TO_ID`). The USA has two upstream ids: `us` means 187 (real numbers); the
virtual numbers stay reachable by id 12.
"""

from __future__ import annotations

from sqlalchemy import delete, select

from ..extensions import db
from ..models import Country, Service, UpstreamPrice, utcnow
from ..money import to_units
from ..upstream.base import Upstream

ISO_TO_ID: dict[str, int] = {
    "ru": 0,
    "ua": 1,
    "kz": 2,
    "cn": 3,
    "ph": 4,
    "mm": 5,
    "id": 6,
    "my": 7,
    "ke": 8,
    "tz": 9,
    "vn": 10,
    "kg": 11,
    "il": 13,
    "hk": 14,
    "pl": 15,
    "gb": 16,
    "mg": 17,
    "cd": 18,
    "ng": 19,
    "mo": 20,
    "eg": 21,
    "in": 22,
    "ie": 23,
    "kh": 24,
    "la": 25,
    "ht": 26,
    "ci": 27,
    "gm": 28,
    "rs": 29,
    "ye": 30,
    "za": 31,
    "ro": 32,
    "co": 33,
    "ee": 34,
    "az": 35,
    "ca": 36,
    "ma": 37,
    "gh": 38,
    "ar": 39,
    "uz": 40,
    "cm": 41,
    "td": 42,
    "de": 43,
    "lt": 44,
    "hr": 45,
    "se": 46,
    "iq": 47,
    "nl": 48,
    "lv": 49,
    "at": 50,
    "by": 51,
    "th": 52,
    "sa": 53,
    "mx": 54,
    "tw": 55,
    "es": 56,
    "ir": 57,
    "dz": 58,
    "si": 59,
    "bd": 60,
    "sn": 61,
    "tr": 62,
    "cz": 63,
    "lk": 64,
    "pe": 65,
    "pk": 66,
    "nz": 67,
    "gn": 68,
    "ml": 69,
    "ve": 70,
    "et": 71,
    "mn": 72,
    "br": 73,
    "af": 74,
    "ug": 75,
    "ao": 76,
    "cy": 77,
    "fr": 78,
    "pg": 79,
    "mz": 80,
    "np": 81,
    "be": 82,
    "bg": 83,
    "hu": 84,
    "md": 85,
    "it": 86,
    "py": 87,
    "hn": 88,
    "tn": 89,
    "ni": 90,
    "tl": 91,
    "bo": 92,
    "cr": 93,
    "gt": 94,
    "ae": 95,
    "zw": 96,
    "pr": 97,
    "sd": 98,
    "tg": 99,
    "kw": 100,
    "sv": 101,
    "ly": 102,
    "jm": 103,
    "tt": 104,
    "ec": 105,
    "sz": 106,
    "om": 107,
    "ba": 108,
    "do": 109,
    "sy": 110,
    "qa": 111,
    "pa": 112,
    "cu": 113,
    "mr": 114,
    "sl": 115,
    "jo": 116,
    "pt": 117,
    "bb": 118,
    "bi": 119,
    "bj": 120,
    "bn": 121,
    "bs": 122,
    "bw": 123,
    "bz": 124,
    "cf": 125,
    "dm": 126,
    "gd": 127,
    "ge": 128,
    "gr": 129,
    "gw": 130,
    "gy": 131,
    "is": 132,
    "km": 133,
    "kn": 134,
    "lr": 135,
    "ls": 136,
    "mw": 137,
    "na": 138,
    "ne": 139,
    "rw": 140,
    "sk": 141,
    "sr": 142,
    "tj": 143,
    "mc": 144,
    "bh": 145,
    "re": 146,
    "zm": 147,
    "am": 148,
    "so": 149,
    "cg": 150,
    "cl": 151,
    "bf": 152,
    "lb": 153,
    "ga": 154,
    "al": 155,
    "uy": 156,
    "mu": 157,
    "bt": 158,
    "mv": 159,
    "gp": 160,
    "tm": 161,
    "gf": 162,
    "fi": 163,
    "lc": 164,
    "lu": 165,
    "vc": 166,
    "gq": 167,
    "dj": 168,
    "ag": 169,
    "ky": 170,
    "me": 171,
    "dk": 172,
    "ch": 173,
    "no": 174,
    "au": 175,
    "er": 176,
    "ss": 177,
    "st": 178,
    "aw": 179,
    "ms": 180,
    "ai": 181,
    "jp": 182,
    "mk": 183,
    "sc": 184,
    "nc": 185,
    "cv": 186,
    "us": 187,
}
ISO_ALIASES = {"uk": "gb"}
ID_TO_ISO: dict[int, str] = {v: k for k, v in ISO_TO_ID.items()}


class UnknownCountry(ValueError):
    pass


def parse_country(raw: str | None) -> int:
    """An upstream country id from `us`/`US`/`gb`/`uk` or a numeric id. Raises UnknownCountry."""
    text = (raw or "").strip().lower()
    if not text:
        raise UnknownCountry("country is required")
    if text.isascii() and text.isdigit() and len(text) <= 4:  # not '²' or '١٢'
        return int(text)
    text = ISO_ALIASES.get(text, text)
    if text in ISO_TO_ID:
        return ISO_TO_ID[text]
    raise UnknownCountry(f"unknown country {raw!r}")


def service(code: str) -> Service | None:
    return db.session.get(Service, code) if code and len(code) <= 40 else None


def country(country_id: int) -> Country | None:
    return db.session.get(Country, country_id)


def enabled_services() -> list[Service]:
    return list(
        db.session.execute(
            select(Service).where(Service.enabled.is_(True)).order_by(Service.name)
        ).scalars()
    )


def enabled_countries() -> list[Country]:
    return list(
        db.session.execute(
            select(Country).where(Country.enabled.is_(True)).order_by(Country.name)
        ).scalars()
    )


def refresh(provider: Upstream) -> dict[str, int]:
    """Fetch services, countries and prices from the upstream and store them; commits.

    Existing enable/disable switches are kept. Prices absent from the new list are dropped.
    Raises UpstreamError subclasses when the upstream fails (nothing changes then).
    """
    services = provider.get_services()
    countries = provider.get_countries()
    prices = provider.get_prices()
    now = utcnow()

    known_services = {s.code: s for s in db.session.execute(select(Service)).scalars()}
    for info in services:
        row = known_services.get(info.code)
        if row is None:
            db.session.add(Service(code=info.code, name=info.name or info.code, enabled=True))
        elif info.name and row.name != info.name:
            row.name = info.name
    known_countries = {c.id: c for c in db.session.execute(select(Country)).scalars()}
    for info in countries:
        row = known_countries.get(info.id)
        if row is None:
            db.session.add(
                Country(id=info.id, name=info.name or str(info.id), iso=ID_TO_ISO.get(info.id))
            )
        elif info.name and row.name != info.name:
            row.name = info.name

    db.session.execute(delete(UpstreamPrice))
    seen = set()
    for entry in prices:
        key = (entry.service, entry.country_id)
        if key in seen or len(entry.service) > 40:
            continue
        seen.add(key)
        db.session.add(
            UpstreamPrice(
                service=entry.service,
                country_id=entry.country_id,
                cost=to_units(entry.cost, round_up=True),
                count=max(int(entry.count), 0),
                updated_at=now,
            )
        )
    db.session.commit()
    return {"services": len(services), "countries": len(countries), "prices": len(seen)}
