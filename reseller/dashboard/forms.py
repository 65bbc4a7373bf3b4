from wtforms import (
    EmailField,
    Form,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
)
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange, Optional

from ..forms import PageForm
from ..safe_http import MAX_URL_LENGTH
from ..services.accounts import MIN_PASSWORD_LENGTH
from ..services.bulk import MAX_QUANTITY


class BuyForm(PageForm):
    """One offer's Buy button: the service, the country and the price the customer saw."""

    service = HiddenField(validators=[DataRequired(), Length(max=40)])
    country = HiddenField(validators=[DataRequired(), Length(max=10)])
    max_price = HiddenField(validators=[DataRequired(), Length(max=20)])
    # A fresh key per button and page load: the same form sent twice buys once (API orderId
    # semantics); another button, or the page shown again, carries another key.
    order_id = HiddenField(validators=[Length(max=100)])
    # How many numbers of this kind, each its own activation and charge; absent: one.
    quantity = IntegerField(validators=[Optional(), NumberRange(min=1, max=MAX_QUANTITY)])
    submit = SubmitField("Buy")


class FavouriteForm(PageForm):
    """The star on a country row: keep or forget (service, country) as a favourite."""

    service = HiddenField(validators=[DataRequired(), Length(max=40)])
    country = HiddenField(validators=[DataRequired(), Length(max=10)])
    keep = HiddenField(validators=[DataRequired(), Length(max=1)])  # "1" keep, "0" forget


class ChangePasswordForm(PageForm):
    current_password = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=256)]
    )
    new_password = PasswordField(
        "New password",
        validators=[
            DataRequired(),
            Length(
                min=MIN_PASSWORD_LENGTH,
                max=256,
                message=f"Use at least {MIN_PASSWORD_LENGTH} characters.",
            ),
        ],
    )
    new_password2 = PasswordField(
        "Repeat the new password",
        validators=[
            DataRequired(),
            EqualTo("new_password", message="The new passwords do not match."),
        ],
    )
    submit = SubmitField("Change password")


class HistoryFilterForm(Form):
    """The history filters, read from the query string (a GET form: no CSRF token)."""

    status = SelectField("Status", default="")
    service = SelectField("Service", default="")


class WebhookForm(PageForm):
    url = StringField(
        "Webhook URL",
        validators=[
            DataRequired(message="Enter the URL of your receiver."),
            Length(max=MAX_URL_LENGTH, message=f"Use at most {MAX_URL_LENGTH} characters."),
        ],
        render_kw={"placeholder": "https://example.com/sms-webhook", "inputmode": "url"},
    )
    submit = SubmitField("Save webhook")


class ChangeEmailForm(PageForm):
    email = EmailField(
        "New e-mail address",
        filters=[lambda v: v.strip() if isinstance(v, str) else v],
        validators=[DataRequired(), Length(max=254)],
    )
    password = PasswordField("Current password", validators=[DataRequired(), Length(max=256)])
    submit = SubmitField("Send the confirmation link")
