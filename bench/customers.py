"""Create the benchmark's customers in one process (six `flask users …` calls cost ~15 s).

Usage: `python bench/customers.py EMAIL:CREDIT[,…] PASSWORD` with the app's environment;
prints {"email": {"id": …, "key": …}} as JSON.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reseller.money import parse_amount  # noqa: E402
from reseller.services import accounts, wallet  # noqa: E402
from wsgi import app  # noqa: E402


def main() -> None:
    wanted, password = sys.argv[1], sys.argv[2]
    out = {}
    with app.app_context():
        for item in wanted.split(","):
            email, credit = item.split(":")
            user = accounts.create_user(email, password)
            wallet.adjust(user.id, parse_amount(credit), note="benchmark credit")
            out[email] = {"id": user.id, "key": accounts.reveal_api_key(user)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
