"""rent: rentals, periods, messages, sandbox rentals

Revision ID: c795590c15ae
Revises: a24f0c5e7b21
Create Date: 2026-12-08 00:50:22.963561

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "c795590c15ae"
down_revision = "a24f0c5e7b21"
branch_labels = None
depends_on = None


def upgrade():
    
    op.create_table(
        "sandbox_rentals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=40), nullable=False),
        sa.Column("country_id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("ends_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_rentals")),
    )
    op.create_table(
        "rentals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=40), nullable=False),
        sa.Column("country_id", sa.Integer(), nullable=False),
        sa.Column("operator", sa.String(length=40), server_default="any", nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("upstream_cost", sa.BigInteger(), nullable=True),
        sa.Column("upstream_name", sa.String(length=20), nullable=False),
        sa.Column("upstream_id", sa.String(length=40), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("ends_at", sa.DateTime(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("sms_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_poll_at", sa.DateTime(), nullable=True),
        sa.Column("claimed_until", sa.DateTime(), nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.Column("settlement", sa.String(length=20), nullable=True),
        sa.CheckConstraint("hours > 0", name=op.f("ck_rentals_hours_positive")),
        sa.CheckConstraint("price >= 0", name=op.f("ck_rentals_price_not_negative")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_rentals_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rentals")),
    )
    with op.batch_alter_table("rentals", schema=None) as batch_op:
        batch_op.create_index("ix_rentals_created", ["created_at"], unique=False)
        batch_op.create_index("ix_rentals_status_poll", ["status", "next_poll_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_rentals_upstream_id"), ["upstream_id"], unique=False)
        batch_op.create_index("ix_rentals_user", ["user_id", "id"], unique=False)

    op.create_table(
        "rent_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rental_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("service", sa.String(length=40), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rental_id"], ["rentals.id"], name=op.f("fk_rent_messages_rental_id_rentals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rent_messages")),
        sa.UniqueConstraint("rental_id", "key", name="uq_rent_messages_key"),
    )
    with op.batch_alter_table("rent_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rent_messages_rental_id"), ["rental_id"], unique=False)

    op.create_table(
        "rent_periods",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rental_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("upstream_cost", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("price >= 0", name=op.f("ck_rent_periods_price_not_negative")),
        sa.ForeignKeyConstraint(
            ["rental_id"], ["rentals.id"], name=op.f("fk_rent_periods_rental_id_rentals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rent_periods")),
        sa.UniqueConstraint("rental_id", "seq", name="uq_rent_periods_seq"),
    )
    with op.batch_alter_table("rent_periods", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rent_periods_rental_id"), ["rental_id"], unique=False)

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rent_period_id", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(
            "uq_ledger_entries_rent_period_kind", ["rent_period_id", "kind"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_ledger_entries_rent_period_id_rent_periods"),
            "rent_periods",
            ["rent_period_id"],
            ["id"],
        )

    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rental_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_webhook_events_rental_id_rentals"), "rentals", ["rental_id"], ["id"]
        )

    


def downgrade():
    
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_webhook_events_rental_id_rentals"), type_="foreignkey"
        )
        batch_op.drop_column("rental_id")

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_ledger_entries_rent_period_id_rent_periods"), type_="foreignkey"
        )
        batch_op.drop_constraint("uq_ledger_entries_rent_period_kind", type_="unique")
        batch_op.drop_column("rent_period_id")

    with op.batch_alter_table("rent_periods", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rent_periods_rental_id"))

    op.drop_table("rent_periods")
    with op.batch_alter_table("rent_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rent_messages_rental_id"))

    op.drop_table("rent_messages")
    with op.batch_alter_table("rentals", schema=None) as batch_op:
        batch_op.drop_index("ix_rentals_user")
        batch_op.drop_index(batch_op.f("ix_rentals_upstream_id"))
        batch_op.drop_index("ix_rentals_status_poll")
        batch_op.drop_index("ix_rentals_created")

    op.drop_table("rentals")
    op.drop_table("sandbox_rentals")
    
