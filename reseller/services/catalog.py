"""Countries and services on sale, and the upstream price cache.

Country ids are the upstream's (SMS-Activate numbering); the ISO 3166 alpha-2 mapping is
ours (`reseller.countries`, re-exported here).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

from sqlalchemy import delete, func, insert, select, update

from ..countries import (  # noqa: F401 - callers use them as catalog.parse_country etc.
    ID_TO_ISO,
    ISO_ALIASES,
    ISO_TO_ID,
    UnknownCountry,
    parse_country,
)
from ..extensions import db
from ..models import Country, JobState, Provider, ProviderPrice, Service, UpstreamPrice, utcnow
from ..upstream.base import Upstream
from . import provider as provider_accounts
from . import routing


def service(code: str) -> Service | None:
    return db.session.get(Service, code) if code and len(code) <= 40 else None


def country(country_id: int) -> Country | None:
    return db.session.get(Country, country_id)


# "Telegram (tg)", "USA (187)": how the console suggests a service or a country.
_NAMED_CODE = re.compile(r"^(?P<name>.*?)\s*\((?P<code>[^()]+)\)$")


def find_service(text: str | None) -> Service | None:
    """A service by its code, its name (any case) or "Name (code)"; None when unknown."""
    text = (text or "").strip()
    if not text or len(text) > 160:
        return None
    named = _NAMED_CODE.match(text)
    if named and (found := service(named["code"].strip())) is not None:
        return found
    found = service(text) or service(text.lower())
    if found is not None:
        return found
    return (
        db.session.execute(
            select(Service).where(func.lower(Service.name) == text.lower()).order_by(Service.code)
        )
        .scalars()
        .first()
    )


def find_country(text: str | None) -> Country | None:
    """A country by its id, alpha-2 code, name (any case) or "Name (id)"; None when
    unknown."""
    text = (text or "").strip()
    if not text or len(text) > 160:
        return None
    named = _NAMED_CODE.match(text)
    for candidate in ([named["code"].strip()] if named else []) + [text]:
        try:
            found = country(parse_country(candidate))
        except UnknownCountry:
            continue
        if found is not None:
            return found
    return (
        db.session.execute(
            select(Country).where(func.lower(Country.name) == text.lower()).order_by(Country.id)
        )
        .scalars()
        .first()
    )


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
        native = routing.native_amount(entry.cost)
        if key in rows or len(entry.service) > 40 or native is None:
            continue
        rows[key] = {
            "provider_id": provider.id,
            "service": entry.service,
            "country_id": entry.country_id,
            "cost": routing.our_cost(native, rate),
            "native_cost": native,
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


def reprice(provider: Provider) -> None:
    """Convert the provider's listed costs again at its rate (the operator changed it), as
    a refresh at that rate would, without reading its price list. No commit; the caller
    rebuilds the offers."""
    rate = Decimal(str(provider.rate))
    rows = db.session.execute(
        select(ProviderPrice.service, ProviderPrice.country_id, ProviderPrice.native_cost).where(
            ProviderPrice.provider_id == provider.id
        )
    ).all()
    if rows:
        db.session.execute(
            update(ProviderPrice),
            [
                {
                    "provider_id": provider.id,
                    "service": row.service,
                    "country_id": row.country_id,
                    "cost": routing.our_cost(row.native_cost, rate),
                }
                for row in rows
            ],
        )


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
            _store_reading(name, {"error": provider_accounts.failure_reason(exc)})
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
