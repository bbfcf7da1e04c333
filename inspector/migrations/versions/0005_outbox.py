"""outbox: what each durable output still has to hand on, committed with the verdict

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("inspection_id", sa.Integer(), sa.ForeignKey("inspections.id"), nullable=False),
        sa.Column("output", sa.String(100), nullable=False),
        sa.Column("station", sa.String(200), nullable=True),
        sa.Column("worker", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.UniqueConstraint("inspection_id", "output", name="uq_outbox_inspection_output"),
    )
    op.create_index("ix_outbox_waiting", "outbox", ["output", "station", "delivered_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_waiting", "outbox")
    op.drop_table("outbox")
