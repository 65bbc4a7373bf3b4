"""The public pages: home, the price list, terms and privacy. No login; everything is read
from the catalogue cache and the settings, never from a provider."""

from flask import abort, render_template, request

from ..services import catalog, pricing, settings
from . import bp, storefront


def _query(name: str) -> str:
    return (request.args.get(name) or "").strip()[:60]


@bp.app_template_filter("url_breaks")
def url_breaks_filter(url: str):
    return storefront.url_breaks(url)


@bp.context_processor
def formatting():
    return {"money": storefront.money, "flag": storefront.flag}


@bp.get("/")
def index():
    # Needs no database: the support contact comes from the site context (its fallback).
    return render_template("main/index.html")


@bp.get("/prices")
def prices():
    q = _query("q")
    sort = request.args.get("sort") if request.args.get("sort") in storefront.SORTS else "name"
    offers = pricing.service_offers()
    return render_template(
        "main/prices.html",
        services=storefront.service_rows(offers, query=q, sort=sort),
        all_services=len(offers),
        q=q,
        sort=sort,
        mark=storefront.service_mark,
    )


@bp.get("/prices/<code>")
def service_prices(code: str):
    service = catalog.service(code)
    if service is None or not service.enabled:
        abort(404)
    q = _query("cq")
    sort = storefront.sort_key(request.args.get("sort"))
    return render_template(
        "main/service_prices.html",
        service=service,
        mark=storefront.service_mark(service.code, service.name),
        countries=storefront.country_rows(service.code, query=q, sort=sort),
        q=q,
        sort=sort,
    )


@bp.get("/terms")
def terms():
    return render_template("main/text_page.html", page="terms", text=settings.get("terms_text"))


@bp.get("/privacy")
def privacy():
    return render_template("main/text_page.html", page="privacy", text=settings.get("privacy_text"))
