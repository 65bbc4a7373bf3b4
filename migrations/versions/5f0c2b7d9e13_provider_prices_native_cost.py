"""provider prices: the cost in the provider's own currency, kept for rate changes

Revision ID: 5f0c2b7d9e13
Revises: 26b8d5a24a34
Create Date: 2026-12-08 00:45:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "5f0c2b7d9e13"
down_revision = "26b8d5a24a34"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("provider_prices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("native_cost", sa.Numeric(precision=18, scale=6)))
    # Rows listed before: their cost back in the provider's currency at its rate (the
    # next price refresh replaces them with the list's own figures).
    op.execute(
        "UPDATE provider_prices SET native_cost = cost / (10000.0 * "
        "(SELECT rate FROM providers WHERE providers.id = provider_prices.provider_id))"
    )
    with op.batch_alter_table("provider_prices", schema=None) as batch_op:
        batch_op.alter_column(
            "native_cost", existing_type=sa.Numeric(precision=18, scale=6), nullable=False
        )


def downgrade():
    with op.batch_alter_table("provider_prices", schema=None) as batch_op:
        batch_op.drop_column("native_cost")
