import pytest
from sqlalchemy import select

from reseller.extensions import db
from reseller.models import User
from tests.conftest import make_config, reset_database


def signup(client, email="new@example.com", password="password123", password2=None):
    return client.post(
        "/signup",
        data={"email": email, "password": password, "password2": password2 or password},
    )


@pytest.mark.real_password_hash
def test_passwords_are_hashed_with_scrypt(client):
    signup(client, email="hash@example.com")
    user = db.session.execute(select(User)).scalar_one()
    assert user.password_hash.startswith("scrypt:")
    assert "password123" not in user.password_hash


def test_signup_logs_in_and_shows_the_key(client):
    response = signup(client, email="  New@Example.COM ")
    assert response.status_code == 302
    assert response.location.endswith("/docs")
    user = db.session.execute(select(User)).scalar_one()
    assert user.email == "new@example.com"
    assert user.password_hash != "password123"
    assert user.password_hash.startswith(("scrypt:", "pbkdf2:"))
    page = client.get("/docs").get_data(as_text=True)
    assert "api-key-value" in page


def test_signup_refuses_duplicate_email_case_insensitively(client, make_user):
    make_user(email="taken@example.com")
    response = signup(client, email="TAKEN@example.com")
    assert response.status_code == 200
    assert "already exists" in response.get_data(as_text=True)
    assert db.session.execute(select(db.func.count(User.id))).scalar_one() == 1


@pytest.mark.parametrize(
    "data, message",
    [
        ({"email": "not-an-email", "password": "password123", "password2": "password123"}, "email"),
        ({"email": "a@example.com", "password": "short", "password2": "short"}, "at least 8"),
        (
            {"email": "a@example.com", "password": "password123", "password2": "password124"},
            "do not match",
        ),
    ],
)
def test_signup_form_errors_are_friendly(client, data, message):
    response = client.post("/signup", data=data)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True).lower() or message in response.get_data(
        as_text=True
    )
    assert db.session.execute(select(db.func.count(User.id))).scalar_one() == 0


def test_login_and_logout(client, auth, make_user):
    make_user(email="me@example.com")
    response = auth.login("ME@example.com")
    assert response.status_code == 302
    assert "me@example.com" in client.get("/").get_data(as_text=True)
    response = auth.logout()
    assert response.status_code == 302
    assert "me@example.com" not in client.get("/").get_data(as_text=True)


def test_logout_is_post_only(client, auth, make_user):
    make_user(email="me@example.com")
    auth.login("me@example.com")
    assert client.get("/logout").status_code == 405


@pytest.mark.parametrize(
    "email, password", [("me@example.com", "wrong-pass"), ("no@example.com", "password123")]
)
def test_bad_credentials_get_one_generic_error(client, auth, make_user, email, password):
    make_user(email="me@example.com")
    response = auth.login(email, password)
    assert response.status_code == 200
    assert "Wrong email or password" in response.get_data(as_text=True)
    assert "me@example.com" not in client.get("/").get_data(as_text=True).split("<main")[0]


def test_disabled_account_cannot_log_in(client, auth, make_user):
    user = make_user(email="off@example.com")
    user.active = False
    db.session.commit()
    response = auth.login("off@example.com")
    assert response.status_code == 200
    assert "Wrong email or password" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/docs", "/docs"),
        # a refused `next` is ignored: a customer lands on the dashboard
        ("https://evil.example/", "/dashboard"),
        ("//evil.example/", "/dashboard"),
        ("/\\evil.example", "/dashboard"),
        ("javascript:alert(1)", "/dashboard"),
    ],
)
def test_next_only_to_local_paths(client, auth, make_user, target, expected):
    make_user(email="me@example.com")
    response = client.post(
        "/login",
        query_string={"next": target},
        data={"email": "me@example.com", "password": "password123"},
    )
    assert response.status_code == 302
    assert response.location == expected


@pytest.fixture
def csrf_app(tmp_path):
    from reseller import create_app

    app = create_app(make_config(tmp_path, WTF_CSRF_ENABLED=True))
    with app.app_context():
        reset_database()
        yield app
        db.session.remove()
        db.engine.dispose()


def test_csrf_token_required_on_forms(csrf_app):
    from reseller.services import accounts

    accounts.create_user("me@example.com", "password123")
    client = csrf_app.test_client()
    for path, data in (
        (
            "/signup",
            {"email": "x@example.com", "password": "password123", "password2": "password123"},
        ),
        ("/login", {"email": "me@example.com", "password": "password123"}),
    ):
        response = client.post(path, data=data)
        assert response.status_code in (200, 400)
        assert "me@example.com" not in client.get("/").get_data(as_text=True).split("<main")[0]
    assert db.session.execute(select(db.func.count(User.id))).scalar_one() == 1
    # With the token, login works.
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    response = client.post(
        "/login", data={"email": "me@example.com", "password": "password123", "csrf_token": token}
    )
    assert response.status_code == 302
    # Logging out without the token does nothing.
    client.post("/logout")
    assert "me@example.com" in client.get("/").get_data(as_text=True)


def test_login_is_rate_limited_per_ip_and_per_email(tmp_path):
    from reseller import create_app
    from reseller.extensions import limiter

    app = create_app(make_config(tmp_path, RATELIMIT_ENABLED=True, LOGIN_RATE_LIMIT="3 per minute"))
    with app.app_context():
        reset_database()
        limiter.reset()
        client = app.test_client()
        codes = [
            client.post(
                "/login",
                data={"email": "a@example.com", "password": "x" * 8},
                environ_base={"REMOTE_ADDR": "10.0.0.1"},
            ).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        # Same email from other addresses: the per-email limit holds.
        codes = [
            client.post(
                "/login",
                data={"email": "b@example.com", "password": "x" * 8},
                environ_base={"REMOTE_ADDR": f"10.0.1.{i}"},
            ).status_code
            for i in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        limiter.reset()
        db.session.remove()
        db.engine.dispose()


def test_two_sign_ups_with_one_email_at_once_answer_already_exists(app, monkeypatch):
    """Both requests pass the "is it taken?" check before either inserts (a barrier holds
    them there); the loser's insert collides and gets the form error, not a 500."""
    import threading

    from reseller.services import accounts

    barrier = threading.Barrier(2, timeout=10)
    checked = threading.local()
    real_lookup = accounts.user_by_email

    def racing_lookup(email):
        found = real_lookup(email)
        # PostgreSQL's lookup locks nothing; SQLite's transaction holds the write lock, so
        # end it here to let the other request reach this point too.
        db.session.commit()
        if not getattr(checked, "done", False):
            checked.done = True
            barrier.wait()  # both have looked; neither has inserted
        return found

    monkeypatch.setattr(accounts, "user_by_email", racing_lookup)
    answers = []

    def sign_up():
        answers.append(signup(app.test_client(), email="race@example.com"))

    threads = [threading.Thread(target=sign_up) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 302], statuses
    loser = next(r for r in answers if r.status_code == 200)
    assert "An account with this email already exists." in loser.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.execute(select(db.func.count(User.id))).scalar_one() == 1
