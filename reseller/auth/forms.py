from wtforms import EmailField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Email, EqualTo, Length

from ..forms import PageForm
from ..services.accounts import MIN_PASSWORD_LENGTH


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class SignupForm(PageForm):
    email = EmailField(
        "Email", filters=[_strip], validators=[DataRequired(), Email(), Length(max=254)]
    )
    password = PasswordField(
        "Password",
        validators=[
            DataRequired(),
            Length(
                min=MIN_PASSWORD_LENGTH,
                max=256,
                message=f"Use at least {MIN_PASSWORD_LENGTH} characters.",
            ),
        ],
    )
    password2 = PasswordField(
        "Repeat password",
        validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")],
    )
    submit = SubmitField("Create account")


class LoginForm(PageForm):
    email = EmailField("Email", filters=[_strip], validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    submit = SubmitField("Log in")


class PostForm(PageForm):
    """A form with only the CSRF token, for buttons that change state (log out, regenerate)."""

    submit = SubmitField("Submit")


class TwoFactorCodeForm(PageForm):
    """A code from the authenticator app, or a recovery code (the log-in step, turning
    two-factor on or off, new recovery codes)."""

    code = StringField("Code", filters=[_strip], validators=[DataRequired(), Length(max=20)])
    submit = SubmitField("Continue")


class ForgotPasswordForm(PageForm):
    email = EmailField("Email", filters=[_strip], validators=[DataRequired(), Length(max=254)])
    submit = SubmitField("Send the link")


class ResetPasswordForm(PageForm):
    password = PasswordField(
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
    password2 = PasswordField(
        "Repeat the new password",
        validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")],
    )
    submit = SubmitField("Set the new password")
