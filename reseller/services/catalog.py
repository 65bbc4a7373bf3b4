"""Countries and services on sale, and the upstream price cache.

Country ids are the upstream's (SMS-Activate numbering); the ISO 3166 alpha-2 mapping is
ours (`ISO_TO_ID`). The USA has two upstream ids: `us` means 187 (real numbers); the
virtual numbers stay reachable by id 12.
"""

from __future__ import annotations

import json
from decimal import Decimal

from sqlalchemy import delete, insert, select

from ..extensions import db
from ..models import Country, JobState, Provider, ProviderPrice, Service, UpstreamPrice, utcnow
from ..money import to_units
from ..upstream.base import Upstream
from . import provider as provider_accounts
from . import routing

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


def _store_names(services, countries) -> None:
    """Add services and countries the provider lists; rename known ones. No commit.

    Existing enable/disable switches are kept.
    """
    known_services = {s.code: s for s in db.session.execute(select(Service)).scalars()}
    for info in services:
        row = known_services.get(info.code)
        if row is None:
            known_services[info.code] = row = Service(
                code=info.code, name=info.name or info.code, enabled=True
            )
            db.session.add(row)
        elif info.name and row.name != info.name:
            row.name = info.name
    known_countries = {c.id: c for c in db.session.execute(select(Country)).scalars()}
    for info in countries:
        row = known_countries.get(info.id)
        if row is None:
            known_countries[info.id] = row = Country(
                id=info.id, name=info.name or str(info.id), iso=ID_TO_ISO.get(info.id)
            )
            db.session.add(row)
        elif info.name and row.name != info.name:
            row.name = info.name


def refresh(client: Upstream, provider: Provider | None = None, *, rebuild: bool = True) -> dict:
    """Fetch services, countries and prices from one provider (default: the environment's)
    and store its catalogue; then rebuild the offers. Commits.

    Prices absent from the new list are dropped for that provider. Costs are converted to
    our money at the provider's rate. Raises UpstreamError subclasses when the provider
    fails (nothing changes then).
    """
    provider = provider or provider_accounts.by_name(provider_accounts.default_name())
    services = client.get_services()
    countries = client.get_countries()
    prices = client.get_prices()
    skipped = list(getattr(client, "skipped", ()) or ())
    now = utcnow()
    _store_names(services, countries)
    rate = Decimal(str(provider.rate))
    db.session.execute(delete(ProviderPrice).where(ProviderPrice.provider_id == provider.id))
    rows: dict[tuple[str, int], dict] = {}
    for entry in prices:
        key = (entry.service, entry.country_id)
        if key in rows or len(entry.service) > 40:
            continue
        rows[key] = {
            "provider_id": provider.id,
            "service": entry.service,
            "country_id": entry.country_id,
            "cost": to_units(entry.cost * rate, round_up=True),
            "count": max(int(entry.count), 0),
            "updated_at": now,
        }
    if rows:
        db.session.execute(insert(ProviderPrice), list(rows.values()))
    counts = {
        "services": len(services),
        "countries": len(countries),
        "prices": len(rows),
        "skipped": skipped,
    }
    _store_reading(provider.name, counts)
    db.session.commit()
    if rebuild:
        rebuild_offers()
    return counts


def refresh_all() -> dict[str, dict]:
    """Refresh every enabled provider's catalogue, then rebuild the offers once. Commits.

    A provider that fails keeps its previous catalogue; its entry says why."""
    from ..upstream.errors import UpstreamError

    results: dict[str, dict] = {}
    for provider in provider_accounts.all_providers():
        if not provider.enabled:
            continue
        name = provider.name
        try:
            results[name] = refresh(provider_accounts.upstream(name), provider, rebuild=False)
        except UpstreamError as exc:
            db.session.rollback()
            results[name] = {"error": exc.token}
            _store_reading(name, {"error": exc.token})
            db.session.commit()
    rebuild_offers()
    return results


CATALOGUE_JOB = "catalogue:{}"  # per provider: what its last sync found


def _store_reading(name: str, value: dict) -> None:
    job_name = CATALOGUE_JOB.format(name)
    job = db.session.get(JobState, job_name)
    if job is None:
        job = JobState(name=job_name)
        db.session.add(job)
    job.last_run_at = utcnow()
    job.value = json.dumps(value)


def unsynced() -> list[str]:
    """Enabled providers whose catalogue was never read (just added, or just upgraded to)."""
    names = [p.name for p in provider_accounts.all_providers() if p.enabled]
    read = set(
        db.session.execute(
            select(JobState.name).where(JobState.name.in_([CATALOGUE_JOB.format(n) for n in names]))
        ).scalars()
    )
    return [n for n in names if CATALOGUE_JOB.format(n) not in read]


def catalogue_reading(name: str) -> dict:
    """What the last sync of provider `name` found: counts, skipped names, or an error."""
    job = db.session.get(JobState, CATALOGUE_JOB.format(name))
    if job is None or not job.value:
        return {}
    data = json.loads(job.value)
    data["checked_at"] = job.last_run_at
    return data


def _offers_signature() -> str:
    return json.dumps([routing.policy(), routing.eligible_names()])


def _offer_rows(eligible: list[str], *where) -> list[dict]:
    """Offers from the eligible providers' catalogue rows (optionally filtered): per
    (service, country) the routed provider's cost and everyone's stock together."""
    order = routing.sort_key(routing.policy())
    rows = db.session.execute(
        select(
            ProviderPrice.service,
            ProviderPrice.country_id,
            ProviderPrice.cost,
            ProviderPrice.count,
            Provider.name,
            Provider.priority,
        )
        .join(Provider, Provider.id == ProviderPrice.provider_id)
        .where(Provider.name.in_(eligible), *where)
    ).all()
    best: dict[tuple[str, int], tuple] = {}
    stock: dict[tuple[str, int], int] = {}
    for row in rows:
        key = (row.service, row.country_id)
        stock[key] = stock.get(key, 0) + row.count
        # A provider with stock beats one without; then the policy decides.
        rank = (row.count <= 0, order(row))
        if key not in best or rank < best[key][0]:
            best[key] = (rank, row)
    now = utcnow()
    return [
        {
            "service": key[0],
            "country_id": key[1],
            "cost": row.cost,
            "count": stock[key],
            "provider": row.name,
            "updated_at": now,
        }
        for key, (_rank, row) in best.items()
    ]


def rebuild_offers() -> None:
    """Rebuild what we sell (`UpstreamPrice`) from every eligible provider's catalogue: per
    (service, country), the cost of the provider routing would choose now and the stock of
    all eligible providers together. Commits."""
    signature = _offers_signature()
    offers = _offer_rows(routing.eligible_names())
    db.session.execute(delete(UpstreamPrice))
    if offers:
        db.session.execute(insert(UpstreamPrice), offers)
    job = db.session.get(JobState, routing.OFFERS_JOB)
    if job is None:
        job = JobState(name=routing.OFFERS_JOB)
        db.session.add(job)
    job.value, job.last_run_at = signature, utcnow()
    db.session.commit()


def rebuild_offer(service: str, country_id: int) -> None:
    """Rebuild the offer for one (service, country) after a provider taught us something
    about it (sold out, dearer). Commits."""
    offers = _offer_rows(
        routing.eligible_names(),
        ProviderPrice.service == service,
        ProviderPrice.country_id == country_id,
    )
    db.session.execute(
        delete(UpstreamPrice).where(
            UpstreamPrice.service == service, UpstreamPrice.country_id == country_id
        )
    )
    if offers:
        db.session.execute(insert(UpstreamPrice), offers)
    db.session.commit()


def offers_current() -> bool:
    """Whether the offers were built from the providers routing would use now."""
    job = db.session.get(JobState, routing.OFFERS_JOB)
    return job is not None and job.value == _offers_signature()
