"""The baseline: a bare Flask app answering a constant JSON, served by the same gunicorn
configuration as the real app (`gunicorn -c gunicorn.conf.py --pythonpath bench
baseline_app:app`). What the stack allows, without our code."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def constant():
    return {"balance": 25.4}
