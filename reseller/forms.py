"""The base of every form the site's pages submit."""

from __future__ import annotations

from flask import request
from flask_wtf import FlaskForm

_FROM_THE_REQUEST = object()


class PageForm(FlaskForm):
    """A FlaskForm whose fields read only the text fields of a form-encoded (or multipart)
    body: `request.form`.

    Flask-WTF also fills fields from file parts and from JSON bodies, where a value is a
    FileStorage, a number, a list or an object: filters, validators and services that
    expect text failed on them (a 500), and a login sent as JSON escaped the per-account
    limit, which counts `request.form["email"]`. Here such data is no field's value: the
    form sees the field missing and says so, as for any incomplete form.
    """

    def __init__(self, formdata=_FROM_THE_REQUEST, **kwargs):
        if formdata is _FROM_THE_REQUEST:
            # As Flask-WTF: nothing unless submitted, and an empty body is no data at all.
            formdata = (request.form or None) if self.is_submitted() else None
        super().__init__(formdata=formdata, **kwargs)
