"""Console forms. Amounts, markups and scopes are parsed by the admin service, which
owns their rules; these forms only require and trim."""

from __future__ import annotations

from wtforms import (
    BooleanField,
    DateField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from ..forms import PageForm
from ..models import ActivationStatus, Settlement
from ..services import catalog, settings
from .labels import STATUS_LABELS


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class CreditForm(PageForm):
    amount = StringField(
        "Amount",
        filters=[_strip],
        validators=[DataRequired(message="Enter an amount, like 10.50 or -3.00.")],
        description="Currency units; negative for a debit.",
    )
    note = StringField(
        "Note",
        filters=[_strip],
        validators=[DataRequired(message="A note is required."), Length(max=500)],
        description="Why: shown in the customer's ledger.",
    )
    submit = SubmitField("Apply")


RULE_KINDS = [SelectChoice("markup", "Markup (%)"), SelectChoice("fixed", "Fixed price")]


class RuleValueForm(PageForm):
    kind = SelectField("Kind", choices=RULE_KINDS)
    value = StringField(
        "Value",
        filters=[_strip],
        validators=[DataRequired(message="Enter a markup percentage or a price.")],
        render_kw={"inputmode": "decimal"},
    )
    # Shown once a price turns out below cost: saving it then needs this box ticked.
    accept_loss = BooleanField("Save anyway: these pairs sell at their cost, without a margin")
    submit = SubmitField("Save rule", id="save-rule")


class RuleForm(RuleValueForm):
    # Ids of their own: the Pricing page also has the price table's service/country filter.
    service = StringField(
        "Service",
        id="rule-service",
        filters=[_strip],
        validators=[Length(max=160)],
        description="A service name or code, or * (empty) for every service.",
        render_kw={"list": "service-options", "autocomplete": "off"},
    )
    country = StringField(
        "Country",
        id="rule-country",
        filters=[_strip],
        validators=[Length(max=160)],
        description="A country name, alpha-2 code or numeric id, or * (empty) for every country.",
        render_kw={"list": "country-options", "autocomplete": "off"},
    )


# Settings whose text runs over several lines.
MULTILINE_SETTINGS = frozenset({"topup_instructions", "terms_text", "privacy_text"})


def settings_form_class(keys: list[str]) -> type[PageForm]:
    """A form with one field per setting in `keys` (validated by the settings service)."""

    class SettingsForm(PageForm):
        submit = SubmitField("Save settings")

    for key in keys:
        spec = settings.BY_KEY[key]
        if spec.choices:
            field = SelectField(spec.label, choices=list(spec.choices), description=spec.help)
        else:
            field_class = TextAreaField if key in MULTILINE_SETTINGS else StringField
            field = field_class(spec.label, description=spec.help)
        setattr(SettingsForm, key, field)
    return SettingsForm


class _SearchForm(PageForm):
    """A GET form: it changes nothing, so it carries no CSRF token."""

    class Meta:
        csrf = False

    country_id: int | None = None

    def validate_country(self, field):
        """Accept `us`, `GB`, `187`, `USA`, `USA (187)`; the id is left in `country_id`."""
        self.country_id = None
        if field.data:
            found = catalog.find_country(field.data)
            if found is None:
                raise ValidationError("Unknown country: use a name, an alpha-2 code or an id.")
            self.country_id = found.id


class CustomerSearchForm(_SearchForm):
    q = StringField("Email contains", filters=[_strip], validators=[Length(max=254)])
    phone = StringField(
        "Bought the number",
        filters=[_strip],
        validators=[Length(max=40)],
        render_kw={"inputmode": "tel", "placeholder": "digits of the phone number"},
    )
    # At most 12: a whole key would land in the address bar, the history and access logs.
    key = StringField(
        "API key ends with",
        filters=[_strip],
        validators=[
            Length(
                max=12,
                message="Give the last 4 to 12 characters only: a whole key does not "
                "belong in an address.",
            )
        ],
        render_kw={"autocomplete": "off", "placeholder": "last 4 to 12 characters"},
    )


class ActivationFilterForm(_SearchForm):
    """The service, country and provider choices are filled by the view, with names."""

    status = SelectField(
        "Status",
        choices=[SelectChoice("", "any")]
        + [SelectChoice(s.value, STATUS_LABELS[s]) for s in ActivationStatus],
        validators=[Optional()],
    )
    service = SelectField("Service", choices=[], validators=[Optional()])
    country = SelectField("Country", choices=[], validators=[Optional()])
    provider = SelectField("Provider", choices=[], validators=[Optional()])
    phone = StringField(
        "Phone number",
        filters=[_strip],
        validators=[Length(max=40)],
        render_kw={"inputmode": "tel", "placeholder": "digits"},
    )
    email = StringField("Customer email", filters=[_strip], validators=[Length(max=254)])
    created_from = DateField("From", validators=[Optional()])
    created_to = DateField("To", validators=[Optional()])
    settlement = SelectField(
        "Settled by the worker",
        choices=[
            SelectChoice("", "any"),
            SelectChoice(Settlement.LISTED.value, "against the upstream's list"),
            SelectChoice(Settlement.UNCONFIRMED.value, "without upstream confirmation"),
        ],
        validators=[Optional()],
    )


class AuditFilterForm(_SearchForm):
    # Choices are filled by the view from the log itself. Optional() lets a whitespace-only
    # value through unchecked, so the filter strips it to "" (any) first.
    action = SelectField(
        "Action", choices=[SelectChoice("", "any")], filters=[_strip], validators=[Optional()]
    )
    actor = SelectField(
        "Admin", choices=[SelectChoice("", "anyone")], filters=[_strip], validators=[Optional()]
    )


class PriceFilterForm(_SearchForm):
    service = StringField(
        "Service",
        filters=[_strip],
        validators=[Length(max=160)],
        render_kw={"list": "service-options", "autocomplete": "off"},
    )
    country = StringField(
        "Country",
        filters=[_strip],
        validators=[Length(max=160)],
        render_kw={"list": "country-options", "autocomplete": "off"},
    )
    service_code: str | None = None

    def validate_service(self, field):
        """Accept `tg`, `Telegram`, `Telegram (tg)`; the code is left in `service_code`."""
        self.service_code = None
        if field.data:
            found = catalog.find_service(field.data)
            if found is None:
                raise ValidationError("Unknown service: use a name or a code.")
            self.service_code = found.code


class ProviderEditForm(PageForm):
    """Change a provider; the provider service validates every value."""

    display_name = StringField("Display name", filters=[_strip], validators=[Length(max=80)])
    url = StringField(
        "Base URL",
        filters=[_strip],
        validators=[Length(max=300)],
        description="Empty: the protocol's known address, when it has one.",
    )
    api_key = PasswordField(
        "API key",
        filters=[_strip],
        validators=[Length(max=500)],
        description="Leave empty to keep the stored key.",
    )
    priority = StringField(
        "Priority",
        filters=[_strip],
        default="10",
        description="Lower is tried first.",
        render_kw={"inputmode": "numeric"},
    )
    currency = StringField("Provider's currency", filters=[_strip], default="USD")
    rate = StringField(
        "Rate",
        filters=[_strip],
        default="1",
        description="1 unit of the provider's currency = this many of ours.",
        render_kw={"inputmode": "decimal"},
    )
    notes = TextAreaField("Notes", filters=[_strip], validators=[Length(max=2000)])
    submit = SubmitField("Save provider")


class ProviderForm(ProviderEditForm):
    name = StringField(
        "Name",
        filters=[_strip],
        validators=[DataRequired(message="A name is required."), Length(max=20)],
        description="A slug: lower-case letters, digits, dashes. Activations keep it.",
    )
    # Filled by the view from the known providers; "" is "another provider".
    preset = SelectField("Known provider", choices=[], validators=[Optional()])
    protocol = SelectField("Protocol", choices=[])
    submit = SubmitField("Add provider")
