"""claims by worker and station, for several daemons on one database

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.add_column(sa.Column("station", sa.String(200), nullable=True))
        batch.add_column(sa.Column("worker", sa.String(300), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.DateTime(), nullable=True))
        batch.create_index("ix_inspections_station", ["station"])


def downgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.drop_index("ix_inspections_station")
        batch.drop_column("claimed_at")
        batch.drop_column("worker")
        batch.drop_column("station")
