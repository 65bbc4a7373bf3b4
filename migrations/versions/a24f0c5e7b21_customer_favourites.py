"""customer favourites: (service, country) pairs pinned in the dashboard's picker

Revision ID: a24f0c5e7b21
Revises: a7c3e9d21f58
Create Date: 2026-12-08 01:00:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "a24f0c5e7b21"
down_revision = "a7c3e9d21f58"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "favourites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=40), nullable=False),
        sa.Column("country_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_favourites_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_favourites")),
        sa.UniqueConstraint("user_id", "service", "country_id", name="uq_favourites_pair"),
    )
    with op.batch_alter_table("favourites", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_favourites_user_id"), ["user_id"], unique=False)


def downgrade():
    with op.batch_alter_table("favourites", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_favourites_user_id"))
    op.drop_table("favourites")
