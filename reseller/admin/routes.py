"""Console views. Each parses the request, calls the admin/stats services and renders;
every state change is a POST with a CSRF token and leaves an audit row (in the service)."""

from __future__ import annotations

import functools

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from ..auth.forms import PostForm
from ..extensions import db
from ..models import (
    Activation,
    Country,
    JobState,
    PricingRule,
    Service,
    User,
)
from ..money import format_amount, format_cost
from ..pagination import page_number
from ..services import admin, catalog, payments, pricing, provider_admin, settings, stats, webhooks
from ..services import provider as provider_accounts
from ..services import telegram as telegram_accounts
from ..upstream.registry import PRESETS, PROTOCOLS
from . import bp
from .chart import money_chart
from .forms import (
    ActivationFilterForm,
    AuditFilterForm,
    CreditForm,
    CustomerSearchForm,
    PriceFilterForm,
    ProviderEditForm,
    ProviderForm,
    RuleForm,
    RuleValueForm,
    settings_form_class,
)
from .labels import LEDGER_LABELS, RENT_STATUS_LABELS, STATUS_LABELS

PER_PAGE = 50
PRICE_ROWS_PER_PAGE = 100
GLOBAL_PRICING_KEYS = ["markup_percent", "minimum_price"]


def admin_required(view):
    """Anonymous: to the login page. Logged in but not an admin: 403. An admin without
    two-factor sign-in while ADMIN_REQUIRE_2FA is on: to its set-up page.

    A disabled account counts as anonymous (Flask-Login's `is_authenticated` follows
    `is_active`), so an admin disabled mid-session is sent to the login page.
    """

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()
        if not current_user.is_admin:
            abort(403)
        if current_app.config["ADMIN_REQUIRE_2FA"] and not current_user.two_factor_enabled:
            flash("The console needs two-factor authentication: set it up first.", "info")
            return redirect(url_for("dashboard.two_factor_page"))
        return view(*args, **kwargs)

    return wrapped


@bp.context_processor
def inject_console():
    return {
        "periods": stats.PERIODS,
        "money": format_amount,
        "cost": format_cost,
        "setting": settings.get,
        "status_labels": STATUS_LABELS,
        "rent_status_labels": RENT_STATUS_LABELS,
        "ledger_labels": LEDGER_LABELS,
    }


def _id_arg(name: str) -> int | None:
    """An id from the query string; None when absent or no id of ours (out of range)."""
    value = request.args.get(name, type=int)
    return value if value is not None and 0 < value <= 2**31 - 1 else None


def _names() -> dict:
    """{"services": {code: name}, "countries": {id: name}, "providers": {name: display
    name}}: every name the catalogue and the provider list know."""
    return {
        "services": {s.code: s.name for s in admin.services()},
        "countries": {c.id: c.name for c in admin.countries()},
        "providers": {p.name: p.display_name for p in provider_accounts.all_providers()},
    }


def _back_to_customer(user: User):
    return redirect(url_for(".customer", user_id=user.id))


# --- overview -----------------------------------------------------------------------------


@bp.get("", strict_slashes=False)
@admin_required
def index():
    period_keys = [key for key, _label, _days in stats.PERIODS]
    top = request.args.get("top", "30d")
    if top not in period_keys:
        top = "30d"
    data = stats.overview()
    balances = stats.console_balances()
    standings = provider_admin.standings(balances)
    names = _names()
    return render_template(
        "admin/overview.html",
        data=data,
        top=top,
        names=names,
        chart=money_chart(data.days, data.daily),
        standings=standings,
        threshold=settings.get("low_balance_threshold"),
        funding=stats.funding(
            {s.provider.name: s.balance for s in standings if s.provider.enabled}
        ),
        customers=stats.customer_figures(),
        by_provider=stats.provider_figures(),
        risks=admin.settlement_risks(),
        topups=payments.totals(),
        webhook_figures=webhooks.figures(),
    )


# --- customers ----------------------------------------------------------------------------


@bp.get("/customers")
@admin_required
def customers():
    form = CustomerSearchForm(formdata=request.args)
    page, status = None, 200  # nothing is listed for a search with errors
    if not form.validate():
        status = 400
        form.key.data = ""  # not echoed back: it may be a whole key
    else:
        try:
            query = admin.customers_query(
                form.q.data, phone=form.phone.data, key_ending=form.key.data
            )
        except admin.AdminError as exc:
            form.key.errors.append(str(exc))
            status = 400
        else:
            page = db.paginate(query, page=page_number(), per_page=PER_PAGE, error_out=False)
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template("admin/customers.html", form=form, page=page, args=args), status


def _render_customer(user: User, credit_form: CreditForm, status: int = 200):
    webhook = webhooks.endpoint_for(user.id)
    ledger = db.paginate(
        admin.ledger_query(user.id), page=page_number(), per_page=PER_PAGE, error_out=False
    )
    return (
        render_template(
            "admin/customer.html",
            user=user,
            credit_form=credit_form,
            action_form=PostForm(),
            ledger=ledger,
            activations=admin.recent_activations(user.id),
            names=_names(),
            payments=db.session.execute(payments.history_query(user.id).limit(20)).scalars().all(),
            gateway_label=payments.gateway_label,
            webhook=webhook,
            webhook_failures=webhooks.recent_failures(webhook.id) if webhook else [],
            webhook_queued=webhooks.queued_count(webhook.id) if webhook else 0,
            telegram=telegram_accounts.account_of_user(user.id),
        ),
        status,
    )


@bp.get("/customers/<int:user_id>")
@admin_required
def customer(user_id: int):
    return _render_customer(db.get_or_404(User, user_id), CreditForm())


@bp.post("/customers/<int:user_id>/credit")
@admin_required
def customer_credit(user_id: int):
    user = db.get_or_404(User, user_id)
    form = CreditForm()
    if form.validate_on_submit():
        try:
            amount = admin.parse_adjustment(form.amount.data)
            entry = admin.adjust_balance(user, amount, form.note.data, current_user)
        except admin.AdminError as exc:
            form.amount.errors.append(str(exc))
        else:
            word = "Credited" if amount > 0 else "Debited"
            flash(
                f"{word} {_money(abs(amount))}; the balance is now {_money(entry.balance_after)}.",
                "success",
            )
            return _back_to_customer(user)
    return _render_customer(user, form, 400)


def _customer_action(user_id: int, action) -> object:
    user = db.get_or_404(User, user_id)
    if PostForm().validate_on_submit():
        try:
            message = action(user)
        except admin.AdminError as exc:
            flash(str(exc), "error")
        else:
            flash(message, "success")
    return _back_to_customer(user)


@bp.post("/customers/<int:user_id>/<any(enable, disable):state>")
@admin_required
def customer_active(user_id: int, state: str):
    def act(user):
        admin.set_active(user, state == "enable", current_user)
        return f"{user.email} is {state}d."

    return _customer_action(user_id, act)


@bp.post("/customers/<int:user_id>/<any('grant-admin', 'revoke-admin'):change>")
@admin_required
def customer_admin(user_id: int, change: str):
    def act(user):
        granted = change == "grant-admin"
        admin.set_admin(user, granted, current_user)
        return f"{user.email} {'is now an admin' if granted else 'is no longer an admin'}."

    return _customer_action(user_id, act)


@bp.post("/customers/<int:user_id>/regenerate-key")
@admin_required
def customer_regenerate_key(user_id: int):
    def act(user):
        admin.regenerate_api_key(user, current_user)
        return f"{user.email} has a new API key; the old one no longer works."

    return _customer_action(user_id, act)


# --- activations --------------------------------------------------------------------------


def _with_catalogue_codes(args):
    """The query string with a service or country given by name or alpha-2 code (a link,
    a bookmark) put as the code or id the filter's choices use."""
    args = args.copy()
    service = catalog.find_service(args.get("service"))
    if service is not None:
        args["service"] = service.code
    country = catalog.find_country(args.get("country"))
    if country is not None:
        args["country"] = str(country.id)
    return args


@bp.get("/activations")
@admin_required
def activations():
    form = ActivationFilterForm(formdata=_with_catalogue_codes(request.args))
    names = _names()
    form.service.choices = [SelectChoice("", "any")] + [
        SelectChoice(code, f"{name} ({code})") for code, name in names["services"].items()
    ]
    form.country.choices = [SelectChoice("", "any")] + [
        SelectChoice(str(cid), f"{name} ({cid})") for cid, name in names["countries"].items()
    ]
    form.provider.choices = [SelectChoice("", "any")] + [
        SelectChoice(name, display) for name, display in names["providers"].items()
    ]
    user_id = _id_arg("user")
    page = None  # nothing is listed for a filter with errors
    if form.validate():
        query_filter = admin.ActivationFilter(
            status=form.status.data or None,
            service=form.service.data or None,
            country_id=form.country_id,
            email=form.email.data or None,
            created_from=form.created_from.data,
            created_to=form.created_to.data,
            user_id=user_id,
            settlement=form.settlement.data or None,
            provider=form.provider.data or None,
            phone=form.phone.data or None,
        )
        page = db.paginate(
            admin.activations_query(query_filter),
            page=page_number(),
            per_page=PER_PAGE,
            error_out=False,
        )
    args = {k: v for k, v in request.args.items() if k != "page"}
    return render_template(
        "admin/activations.html",
        form=form,
        page=page,
        args=args,
        filtered_user=db.session.get(User, user_id) if user_id else None,
        risks=admin.settlement_risks(),
        names=names,
    )


@bp.get("/activations/<int:activation_id>")
@admin_required
def activation(activation_id: int):
    item = db.get_or_404(Activation, activation_id)
    return render_template(
        "admin/activation.html",
        item=item,
        ledger=admin.activation_ledger(item.id),
        service=catalog.service(item.service),
        country=catalog.country(item.country_id),
        seller=provider_accounts.by_name(item.upstream_name),
    )


# --- pricing ------------------------------------------------------------------------------


def _global_pricing_form(*, submitted: bool = False):
    form_class = settings_form_class(GLOBAL_PRICING_KEYS)
    if submitted:
        return form_class()
    return form_class(
        formdata=None, data={key: settings.raw_value(key) for key in GLOBAL_PRICING_KEYS}
    )


def _render_pricing(global_form=None, rule_form=None, status: int = 200, shortfalls=None):
    filter_form = PriceFilterForm(formdata=request.args)
    quotes = []  # nothing is listed for a filter with errors
    if filter_form.validate():
        quotes = pricing.price_table(
            filter_form.service_code, filter_form.country_id, only_buyable=False
        )
    page = page_number()
    pages = max(1, -(-len(quotes) // PRICE_ROWS_PER_PAGE))
    page = min(page, pages)
    shown = quotes[(page - 1) * PRICE_ROWS_PER_PAGE : page * PRICE_ROWS_PER_PAGE]
    services, countries = admin.services(), admin.countries()
    args = {k: v for k, v in request.args.items() if k != "page"}
    return (
        render_template(
            "admin/pricing.html",
            global_form=global_form or _global_pricing_form(),
            rule_form=rule_form or RuleForm(formdata=None),
            shortfalls=shortfalls,
            action_form=PostForm(),
            filter_form=filter_form,
            rules=admin.rules(),
            quotes=shown,
            quote_count=len(quotes),
            page=page,
            pages=pages,
            args=args,
            services=services,
            countries=countries,
            names={
                "services": {s.code: s.name for s in services},
                "countries": {c.id: c.name for c in countries},
            },
            service_by_code={s.code: s for s in services},
            country_by_id={c.id: c for c in countries},
            prices_job=db.session.get(JobState, "prices"),
        ),
        status,
    )


@bp.get("/pricing")
@admin_required
def pricing_page():
    return _render_pricing()


@bp.post("/pricing/global")
@admin_required
def pricing_global():
    form = _global_pricing_form(submitted=True)
    if form.validate_on_submit():
        errors = admin.update_settings(
            {key: form[key].data for key in GLOBAL_PRICING_KEYS}, current_user
        )
        if not errors:
            flash("Global pricing saved; it applies to the next quote.", "success")
            return redirect(url_for(".pricing_page"))
        for key, message in errors.items():
            form[key].errors.append(message)
    return _render_pricing(global_form=form, status=400)


def _rule_values(form: RuleValueForm) -> dict:
    """The fixed price or markup a rule form asks for. Raises AdminError."""
    if form.kind.data == "fixed":
        return {"fixed_price": admin.parse_fixed_price(form.value.data)}
    return {"markup_percent": admin.parse_markup(form.value.data)}


@bp.post("/pricing/rules")
@admin_required
def rule_create():
    form = RuleForm()
    shortfalls = None
    if form.validate_on_submit():
        try:
            scope = admin.parse_scope(form.service.data, form.country.data)
            existed = admin.rule_for(scope) is not None
            admin.set_rule(
                scope, **_rule_values(form), accept_loss=form.accept_loss.data, actor=current_user
            )
        except admin.BelowCost as exc:
            shortfalls = exc.shortfalls
        except admin.AdminError as exc:
            form.value.errors.append(str(exc))
        else:
            flash(
                f"Rule for {scope.label} {'replaced' if existed else 'added'}; "
                "it applies to the next quote.",
                "success",
            )
            return redirect(url_for(".pricing_page"))
    return _render_pricing(rule_form=form, status=400, shortfalls=shortfalls)


@bp.route("/pricing/rules/<int:rule_id>", methods=["GET", "POST"])
@admin_required
def rule_edit(rule_id: int):
    rule = db.get_or_404(PricingRule, rule_id)
    form = RuleValueForm(
        data={
            "kind": "fixed" if rule.fixed_price is not None else "markup",
            "value": format_amount(rule.fixed_price)
            if rule.fixed_price is not None
            else str(rule.markup_percent),
        }
        if request.method == "GET"
        else None
    )
    shortfalls = None
    if form.validate_on_submit():
        try:
            admin.set_rule(
                admin.RuleScope(rule.service, rule.country_id),
                **_rule_values(form),
                accept_loss=form.accept_loss.data,
                actor=current_user,
            )
        except admin.BelowCost as exc:
            shortfalls = exc.shortfalls
        except admin.AdminError as exc:
            form.value.errors.append(str(exc))
        else:
            flash("Rule saved; it applies to the next quote.", "success")
            return redirect(url_for(".pricing_page"))
    status = 400 if request.method == "POST" else 200
    return render_template(
        "admin/rule.html",
        rule=rule,
        form=form,
        action_form=PostForm(),
        shortfalls=shortfalls,
        service=catalog.service(rule.service) if rule.service else None,
        country=catalog.country(rule.country_id) if rule.country_id is not None else None,
        names=_names(),
    ), status


@bp.post("/pricing/rules/<int:rule_id>/delete")
@admin_required
def rule_delete(rule_id: int):
    rule = db.get_or_404(PricingRule, rule_id)
    if PostForm().validate_on_submit():
        admin.delete_rule(rule, current_user)
        flash("Rule deleted.", "success")
    return redirect(url_for(".pricing_page"))


@bp.post("/pricing/services/<code>/<any(enable, disable):state>")
@admin_required
def service_switch(code: str, state: str):
    service = db.get_or_404(Service, code)
    if PostForm().validate_on_submit():
        admin.set_service_enabled(service, state == "enable", current_user)
        flash(f"Service {service.name} ({service.code}) {state}d.", "success")
    return redirect(url_for(".pricing_page", _anchor="switches"))


@bp.post("/pricing/countries/<int:country_id>/<any(enable, disable):state>")
@admin_required
def country_switch(country_id: int, state: str):
    country = db.get_or_404(Country, country_id)
    if PostForm().validate_on_submit():
        admin.set_country_enabled(country, state == "enable", current_user)
        flash(f"Country {country.name} ({country.id}) {state}d.", "success")
    return redirect(url_for(".pricing_page", _anchor="switches"))


@bp.post("/pricing/refresh")
@admin_required
def pricing_refresh():
    if PostForm().validate_on_submit():
        report = admin.refresh_prices(current_user)
        if report.errors:
            flash("The upstream did not answer: " + "; ".join(report.errors), "error")
        elif report.prices_refreshed:
            flash("Catalog and prices refreshed from the upstream.", "success")
        else:
            flash("A refresh is already running; try again in a moment.", "warning")
    return redirect(url_for(".pricing_page"))


# --- settings -----------------------------------------------------------------------------


# The Settings page's sections (their headings are in the template); the global markup and
# minimum price live on the Pricing page only. A setting in no section is listed under
# "other" until it is given one.
SETTINGS_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "pricing",
        ("routing_policy", "serve_at_loss", "rent_markup_percent", "low_balance_threshold"),
    ),
    (
        "activations",
        (
            "activation_lifetime",
            "early_cancel_window",
            "max_active_activations",
            "poll_interval",
            "default_country",
        ),
    ),
    (
        "topups",
        (
            "payment_gateways",
            "topup_minimum",
            "topup_maximum",
            "topup_presets",
            "topup_bonus_percent",
            "topup_bonus_threshold",
            "topup_instructions",
        ),
    ),
    (
        "texts",
        ("site_name", "support_contact", "terms_text", "privacy_text", "show_provider_names"),
    ),
)


def _settings_sections() -> list[tuple[str, list[settings.SettingSpec]]]:
    """[(section id, its specs)] for every setting but the Pricing page's."""
    placed = {key for _section, keys in SETTINGS_SECTIONS for key in keys}
    sections = [
        (section, [settings.BY_KEY[key] for key in keys if key in settings.BY_KEY])
        for section, keys in SETTINGS_SECTIONS
    ]
    other = [
        spec
        for spec in settings.SPECS
        if spec.key not in placed and spec.key not in GLOBAL_PRICING_KEYS
    ]
    return sections + ([("other", other)] if other else [])


@bp.route("/settings", methods=["GET", "POST"])
@admin_required
def settings_page():
    sections = _settings_sections()
    keys = [spec.key for _section, specs in sections for spec in specs]
    form_class = settings_form_class(keys)
    if request.method == "GET":
        form = form_class(data={key: settings.raw_value(key) for key in keys})
    else:
        form = form_class()
    if form.validate_on_submit():
        errors = admin.update_settings({key: form[key].data for key in keys}, current_user)
        if not errors:
            flash("Settings saved.", "success")
            return redirect(url_for(".settings_page"))
        for key, message in errors.items():
            form[key].errors.append(message)
    status = 400 if request.method == "POST" else 200
    return render_template("admin/settings.html", form=form, sections=sections), status


# --- audit log ----------------------------------------------------------------------------


@bp.get("/audit")
@admin_required
def audit_log():
    form = AuditFilterForm(formdata=request.args)
    actors = admin.audit_actors()
    form.action.choices = [SelectChoice("", "any")] + [
        SelectChoice(a) for a in admin.audit_actions()
    ]
    form.actor.choices = [SelectChoice("", "anyone"), SelectChoice("0", "command line")] + [
        SelectChoice(str(u.id), u.email) for u in actors
    ]
    action, actor_id = None, None
    if form.validate():
        action = form.action.data or None
        actor_id = int(form.actor.data) if form.actor.data else None
    page = db.paginate(
        admin.audit_query(action, actor_id), page=page_number(), per_page=PER_PAGE, error_out=False
    )
    args = {k: v for k, v in request.args.items() if k != "page"}
    return render_template("admin/audit.html", form=form, page=page, args=args)


def _money(units: int) -> str:
    return f"{format_amount(units)} {current_app.config['CURRENCY']}"


# --- providers ----------------------------------------------------------------------------


def _provider_form() -> ProviderForm:
    form = ProviderForm()
    form.protocol.choices = [SelectChoice(p, p) for p in PROTOCOLS]
    form.preset.choices = [SelectChoice("", "Another provider")] + [
        SelectChoice(name, name, render_kw={"data-protocol": protocol, "data-url": url})
        for name, (protocol, url) in PRESETS.items()
    ]
    return form


def _render_providers(form: ProviderForm, status: int = 200):
    balances = stats.console_balances()
    rows = provider_admin.console_rows(balances)
    return (
        render_template(
            "admin/providers.html",
            rows=rows,
            standings=[provider_admin.Standing(r.provider, r.balance, r.health) for r in rows],
            threshold=settings.get("low_balance_threshold"),
            form=form,
            action_form=PostForm(),
            policy=settings.get("routing_policy"),
        ),
        status,
    )


@bp.get("/providers")
@admin_required
def providers_page():
    return _render_providers(_provider_form())


@bp.post("/providers")
@admin_required
def provider_add():
    form = _provider_form()
    if form.validate_on_submit():
        protocol, url = form.protocol.data, form.url.data
        if form.preset.data in PRESETS and not url:  # without JavaScript nothing filled it
            protocol, url = PRESETS[form.preset.data]
        try:
            added = provider_admin.add(
                form.name.data,
                protocol,
                url,
                form.api_key.data,
                priority=form.priority.data or 10,
                display_name=form.display_name.data,
                currency=form.currency.data or "USD",
                rate=form.rate.data or "1",
                notes=form.notes.data,
                actor=current_user,
            )
        except admin.AdminError as exc:
            form.name.errors.append(str(exc))
        else:
            flash(
                f"Provider {added.name} added; its prices are read on the worker's next pass.",
                "success",
            )
            return redirect(url_for(".providers_page"))
    return _render_providers(form, 400)


def _provider_or_404(name: str):
    try:
        return provider_admin.get(name)
    except admin.AdminError:
        abort(404)


@bp.route("/providers/<name>", methods=["GET", "POST"])
@admin_required
def provider_edit(name: str):
    row = _provider_or_404(name)
    form = ProviderEditForm(obj=None if request.method == "POST" else row)
    if request.method == "GET":
        form.url.data, form.api_key.data = row.base_url, ""
        form.rate.data = format(row.rate.normalize(), "f") if row.rate else "1"
    elif form.validate_on_submit():
        try:
            provider_admin.update(
                row,
                display_name=form.display_name.data,
                url=None if row.from_env else form.url.data,
                api_key=form.api_key.data or None,
                priority=form.priority.data,
                currency=form.currency.data,
                rate=form.rate.data,
                notes=form.notes.data,
                actor=current_user,
            )
        except admin.AdminError as exc:
            db.session.rollback()
            form.display_name.errors.append(str(exc))
        else:
            flash(f"Provider {row.name} saved.", "success")
            return redirect(url_for(".providers_page"))
    status = 400 if form.errors else 200
    return render_template("admin/provider.html", row=row, form=form), status


@bp.post("/providers/<name>/<any(enable, disable, remove):action>")
@admin_required
def provider_action(name: str, action: str):
    row = _provider_or_404(name)
    if PostForm().validate_on_submit():
        try:
            if action == "remove":
                provider_admin.remove(row, current_user)
            else:
                provider_admin.set_enabled(row, action == "enable", current_user)
        except admin.AdminError as exc:
            flash(str(exc), "error")
        else:
            flash(f"Provider {name} {action}d.", "success")
    return redirect(url_for(".providers_page"))
