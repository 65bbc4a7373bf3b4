"""`flask db upgrade` on an empty database yields exactly the models."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade
from sqlalchemy import text

from reseller.extensions import db
from tests.conftest import ON_POSTGRES


def _empty_schema() -> None:
    """A database with no tables, ready for `upgrade` from the first revision."""
    if ON_POSTGRES:
        db.session.execute(text("DROP SCHEMA public CASCADE"))
        db.session.execute(text("CREATE SCHEMA public"))
    else:
        db.drop_all()
    db.session.commit()


def test_upgrade_from_empty_matches_models(app):
    _empty_schema()
    upgrade(directory="migrations")
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "render_as_batch": True}
        )
        diff = compare_metadata(context, db.metadata)
    assert diff == []
    if ON_POSTGRES:  # leave the schema as the other tests expect it
        db.session.execute(text("DROP TABLE alembic_version"))
        db.session.commit()


def test_listed_costs_are_kept_in_the_providers_currency_on_upgrade(app):
    """5f0c2b7d9e13: prices listed before keep their cost, and gain it in the provider's
    currency (cost back at the provider's rate), which a later rate change converts."""
    from decimal import Decimal

    from reseller.models import Provider

    _empty_schema()
    upgrade(directory="migrations", revision="26b8d5a24a34")
    db.session.add(
        Provider(
            name="rub", display_name="rub", protocol="sandbox", base_url="", enabled=True,
            priority=1, currency="RUB", rate=Decimal("0.011"), api_key_encrypted="",
        )
    )  # fmt: skip
    db.session.flush()
    db.session.execute(
        text(
            "INSERT INTO provider_prices (provider_id, service, country_id, cost, count, "
            "updated_at) SELECT id, 'tg', 12, 2750, 10, CURRENT_TIMESTAMP FROM providers"
        )
    )
    db.session.commit()
    upgrade(directory="migrations")
    cost, native = db.session.execute(text("SELECT cost, native_cost FROM provider_prices")).one()
    assert cost == 2750 and Decimal(str(native)).quantize(Decimal("0.01")) == Decimal("25.00")
    db.session.commit()
    if ON_POSTGRES:
        db.session.execute(text("DROP TABLE alembic_version"))
        db.session.commit()


def test_the_payment_id_each_top_up_kept_becomes_its_first_attempt(app, make_user):
    """Pending NOWPayments top-ups keep being reconciled across the upgrade that brought
    payment_attempts: their one stored payment id becomes an attempt."""
    from alembic.script import ScriptDirectory
    from flask_migrate import downgrade
    from sqlalchemy import insert, select

    from reseller.models import Payment, PaymentAttempt

    _empty_schema()
    upgrade(directory="migrations")
    user_id = make_user().id  # made at the head: later revisions may add user columns
    db.session.commit()
    script = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config("migrations"))
    before = script.get_revision("a7c3e9d21f58").down_revision
    downgrade(directory="migrations", revision=before)
    for status, reference in (("pending", "4409701815"), ("paid", "4409701816"), ("failed", None)):
        db.session.execute(  # only the columns the old schema has
            insert(Payment.__table__).values(
                user_id=user_id,
                gateway="nowpayments",
                amount=10_000,
                currency="USD",
                status=status,
                gateway_status="confirming",
                invoice_id=f"inv-{status}",
                gateway_reference=reference,
            )
        )
    db.session.commit()
    upgrade(directory="migrations")
    found = db.session.execute(
        select(Payment.status, PaymentAttempt.reference, PaymentAttempt.state)
        .join(PaymentAttempt, PaymentAttempt.payment_id == Payment.id)
        .order_by(PaymentAttempt.reference)
    ).all()
    assert found == [("pending", "4409701815", "pending"), ("paid", "4409701816", "paid")]
    if ON_POSTGRES:
        db.session.execute(text("DROP TABLE alembic_version"))
        db.session.commit()
