"""users: the last characters of the API key, for support to search by

Revision ID: 5e1b7c9d2a40
Revises: c795590c15ae
Create Date: 2026-12-08 00:50:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "5e1b7c9d2a40"
down_revision = "c795590c15ae"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("api_key_tail", sa.String(length=8), nullable=True))
        batch_op.create_index(batch_op.f("ix_users_api_key_tail"), ["api_key_tail"], unique=False)
    # Keys issued before: their tails are filled by `flask users fill-key-tails`, which
    # decrypts them with the application's SECRET_KEY (a migration does not hold it).


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_api_key_tail"))
        batch_op.drop_column("api_key_tail")
