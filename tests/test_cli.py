from sqlalchemy import select

from reseller.extensions import db
from reseller.models import LedgerEntry, User
from reseller.services import accounts


def test_users_create_with_password_and_admin(runner):
    result = runner.invoke(
        args=["users", "create", "Boss@Example.com", "--password", "password123", "--admin"]
    )
    assert result.exit_code == 0, result.output
    user = accounts.user_by_email("boss@example.com")
    assert user.is_admin
    assert accounts.authenticate("boss@example.com", "password123") is not None


def test_users_create_prompts_for_password(runner):
    result = runner.invoke(
        args=["users", "create", "p@example.com"], input="password123\npassword123\n"
    )
    assert result.exit_code == 0, result.output
    assert accounts.authenticate("p@example.com", "password123") is not None


def test_users_create_refuses_duplicates_and_weak_passwords(runner, make_user):
    make_user(email="dup@example.com")
    result = runner.invoke(args=["users", "create", "dup@example.com", "--password", "password123"])
    assert result.exit_code != 0
    assert "already exists" in result.output
    result = runner.invoke(args=["users", "create", "weak@example.com", "--password", "x"])
    assert result.exit_code != 0
    assert accounts.user_by_email("weak@example.com") is None


def test_users_credit_and_debit(runner, make_user):
    user = make_user(email="c@example.com")
    result = runner.invoke(
        args=["users", "credit", "c@example.com", "10.50", "--note", "paid by wire"]
    )
    assert result.exit_code == 0, result.output
    assert "10.50" in result.output
    result = runner.invoke(args=["users", "credit", "c@example.com", "-0.50"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert db.session.get(User, user.id).balance == 100_000
    notes = db.session.execute(select(LedgerEntry.note).order_by(LedgerEntry.id)).scalars().all()
    assert notes[0] == "paid by wire"


def test_users_credit_errors(runner, make_user):
    make_user(email="c@example.com", balance="1.00")
    for args, text in (
        (["users", "credit", "nobody@example.com", "1"], "no user"),
        (["users", "credit", "c@example.com", "ten"], "not an amount"),
        (["users", "credit", "c@example.com", "1.005"], "two decimals"),
        (["users", "credit", "c@example.com", "0"], "zero"),
        (["users", "credit", "c@example.com", "-5"], "cannot debit"),
    ):
        result = runner.invoke(args=args)
        assert result.exit_code != 0, args
        assert text in result.output, (args, result.output)
    assert db.session.execute(select(db.func.count(LedgerEntry.id))).scalar_one() == 1


def test_users_api_key_prints_the_key_alone(runner, make_user):
    user = make_user(email="k@example.com")
    result = runner.invoke(args=["users", "api-key", "k@example.com"])
    assert result.exit_code == 0
    key = result.output.strip()
    assert result.output == key + "\n"
    assert accounts.api_caller(key).id == user.id
    assert runner.invoke(args=["users", "api-key", "x@example.com"]).exit_code != 0


def test_users_list(runner, make_user):
    make_user(email="a@example.com", balance="2.50")
    make_user(email="b@example.com", is_admin=True)
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0
    assert "a@example.com" in result.output and "2.50" in result.output
    assert "admin" in result.output


def test_users_disable_enable(runner, make_user):
    make_user(email="d@example.com")
    assert runner.invoke(args=["users", "disable", "d@example.com"]).exit_code == 0
    assert accounts.user_by_email("d@example.com").active is False
    assert runner.invoke(args=["users", "enable", "d@example.com"]).exit_code == 0
    db.session.expire_all()
    assert accounts.user_by_email("d@example.com").active is True


def test_seed_demo_only_on_empty_database(runner):
    result = runner.invoke(args=["seed-demo"])
    assert result.exit_code == 0
    assert "admin@example.com" in result.output
    assert db.session.execute(select(db.func.count(User.id))).scalar_one() == 2
    assert "created" in result.output
    result = runner.invoke(args=["seed-demo"])
    # Every run names the accounts, so `make run` always prints how to log in.
    assert "already there" in result.output
    assert "customer@example.com / customer-password (balance 25.00)" in result.output
    assert db.session.execute(select(db.func.count(User.id))).scalar_one() == 2


def test_seed_demo_on_a_database_of_other_users(runner, make_user):
    make_user(email="someone@example.com")
    result = runner.invoke(args=["seed-demo"])
    assert result.exit_code == 0
    assert "no demo accounts" in result.output
    assert db.session.execute(select(db.func.count(User.id))).scalar_one() == 1


def test_ledger_verify_passes_and_fails(runner, make_user):
    from sqlalchemy import update

    user = make_user(balance="1.00")
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 0 and "ledger OK" in result.output
    db.session.execute(update(User).where(User.id == user.id).values(balance=5))
    db.session.commit()
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code != 0
    assert "ledger sum" in result.output


def test_users_credit_is_audited(runner, make_user):
    from reseller.models import AuditLog

    make_user(email="a@example.com")
    runner.invoke(args=["users", "credit", "a@example.com", "3.00", "--note", "wire 42"])
    entry = db.session.execute(select(AuditLog)).scalar_one()
    assert entry.action == "wallet.credit" and entry.actor_id is None
    assert "wire 42" in entry.after
