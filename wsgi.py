"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi …`."""

from reseller import create_app

app = create_app()
