from dataclasses import dataclass
from urllib.parse import urlencode

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..api.errors import ERROR_TABLE
from ..auth.forms import PostForm
from ..services import accounts, catalog, provider, settings, webhooks
from . import bp
from .content import (
    MAIN_ACTIONS,
    MORE_ACTIONS,
    NOT_SERVED,
    RENT_ACTIONS,
    WEBHOOK_EVENTS,
    WEBHOOK_VERIFY_EXAMPLE,
    webhook_examples,
)

EXAMPLE_PARAMS = {
    "getNumber": {"service": "tg", "country": "us"},
    "getNumberV2": {"service": "tg", "country": "us", "orderId": "my-order-1"},
    "getStatus": {"id": "12345"},
    "getStatusV2": {"id": "12345"},
    "setStatus": {"id": "12345", "status": "8"},
    "getPrices": {"service": "tg"},
}


def example_url(
    base: str, path: str, action: str, key: str, json_dialect: bool, country_iso: str = "us"
) -> str:
    params = {"api_key": key, "action": action, **EXAMPLE_PARAMS.get(action, {})}
    if "country" in params:
        params["country"] = country_iso
    if json_dialect:
        params["format"] = "json"
    return f"{base}{path}?{urlencode(params)}"


@dataclass(frozen=True)
class ExampleCountry:
    """The country the docs page's examples name, taken from the live catalogue."""

    id: int
    name: str
    iso: str
    some_ids: str  # "187, 16": a few ids on sale, this one first
    some_isos: str  # "us, gb"


# When the catalogue is empty (never synced): the USA, whose mapping is ours (countries.py).
FALLBACK_COUNTRY = ExampleCountry(187, "USA", "us", "187", "us")


def example_country() -> ExampleCountry:
    """The USA when it is on sale (the id `us` stands for), else the first country on sale
    with an alpha-2 code; a few more of each for the lists."""
    countries = [c for c in catalog.enabled_countries() if c.iso]
    if not countries:
        return FALLBACK_COUNTRY
    us = catalog.ISO_TO_ID.get("us")
    countries.sort(key=lambda c: (c.id != us, c.name.casefold()))
    first = countries[0]
    shown = countries[:3]
    return ExampleCountry(
        first.id,
        first.name,
        first.iso,
        ", ".join(str(c.id) for c in shown),
        ", ".join(c.iso for c in shown),
    )


def fill(text: str, country: ExampleCountry, default_country: str) -> str:
    """`text` from docs/content.py with its placeholders filled (JSON examples hold braces of
    their own, so each placeholder is replaced by name, not with str.format)."""
    for name, value in (
        ("default_country", default_country),
        ("country_id", str(country.id)),
        ("country_name", country.name),
        ("country_iso", country.iso),
        ("some_ids", country.some_ids),
        ("some_isos", country.some_isos),
    ):
        text = text.replace("{" + name + "}", value)
    return text


@bp.get("/docs")
def index():
    key = None
    if current_user.is_authenticated:
        key = accounts.reveal_api_key(current_user)
    base = request.host_url.rstrip("/")
    shown_key = key or "YOUR_API_KEY"

    def url(action: str, json_dialect: bool = True, path: str = "/api/customer") -> str:
        return example_url(base, path, action, shown_key, json_dialect, country.iso)

    country = example_country()
    default_country = _default_country()

    return render_template(
        "docs/index.html",
        api_key=key,
        base=base,
        url=url,
        main_actions=MAIN_ACTIONS,
        more_actions=MORE_ACTIONS,
        rent_actions=RENT_ACTIONS,
        not_served=NOT_SERVED,
        error_table=ERROR_TABLE,
        regenerate_form=PostForm(),
        webhook_events=WEBHOOK_EVENTS,
        webhook_examples=webhook_examples(country.id),
        webhook_verify=WEBHOOK_VERIFY_EXAMPLE,
        webhook_rules=webhooks,
        default_country=default_country,
        example=country,
        fill=lambda text: fill(text or "", country, default_country),
        provider_names=_provider_names(),
    )


def _provider_names() -> list[str]:
    """The enabled providers the page names, or none when the operator hides them."""
    if settings.get("show_provider_names") != "yes":
        return []
    return provider.enabled_display_names()


def _default_country() -> str:
    """The operator's default country for getNumber, as the docs page names it."""
    country_id = settings.get("default_country")
    country = catalog.country(country_id)
    return f"{country.name} (id {country_id})" if country else f"country id {country_id}"


@bp.post("/docs/api-key/regenerate")
@login_required
def regenerate_key():
    form = PostForm()
    if form.validate_on_submit():
        accounts.regenerate_api_key(current_user)
        flash("A new API key was issued; the old one no longer works.", "success")
    back = request.form.get("back")
    if back == "account":
        return redirect(url_for("dashboard.account"))
    return redirect(url_for("docs.index") + "#api-key")
