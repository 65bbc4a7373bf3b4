"""activations.settlement: how the worker settled a purchase whose answer never came

Revision ID: 3c1e2d7a9b40
Revises: 7862f5a404f1
Create Date: 2026-12-02 02:00:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "3c1e2d7a9b40"
down_revision = "7862f5a404f1"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("activations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("settlement", sa.String(length=20), nullable=True))


def downgrade():
    with op.batch_alter_table("activations", schema=None) as batch_op:
        batch_op.drop_column("settlement")
