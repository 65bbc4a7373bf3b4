"""payment attempts: every payment made on a top-up's invoice

Revision ID: a7c3e9d21f58
Revises: 5f0c2b7d9e13
Create Date: 2026-12-08 00:50:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "a7c3e9d21f58"
down_revision = "5f0c2b7d9e13"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "payment_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("gateway_status", sa.String(length=40), nullable=False),
        sa.Column("received", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_attempts_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_attempts")),
        sa.UniqueConstraint(
            "payment_id", "reference", name="uq_payment_attempts_payment_reference"
        ),
    )
    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payment_attempts_payment_id"), ["payment_id"], unique=False
        )
    # The one payment id each top-up kept so far becomes its first attempt, so pending
    # top-ups stay reconciled.
    op.execute(
        "INSERT INTO payment_attempts (payment_id, reference, state, gateway_status, "
        "created_at, updated_at) "
        "SELECT id, gateway_reference, "
        "CASE WHEN status = 'paid' THEN 'paid' ELSE 'pending' END, "
        "COALESCE(gateway_status, 'unknown'), updated_at, updated_at "
        "FROM payments WHERE gateway_reference IS NOT NULL"
    )


def downgrade():
    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_attempts_payment_id"))
    op.drop_table("payment_attempts")
