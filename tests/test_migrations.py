"""`flask db upgrade` on an empty database yields exactly the models."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade
from sqlalchemy import text

from reseller.extensions import db
from tests.conftest import ON_POSTGRES


def test_upgrade_from_empty_matches_models(app):
    if ON_POSTGRES:
        db.session.execute(text("DROP SCHEMA public CASCADE"))
        db.session.execute(text("CREATE SCHEMA public"))
        db.session.commit()
    else:
        db.drop_all()
        db.session.commit()
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
