"""inspections.regions: the hot regions of a verdict, in the photo's pixels

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inspections", sa.Column("regions", sa.JSON(), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE (SQLite 3.35 or later has DROP COLUMN): batch mode would recreate the
    # inspections table, which the outbox's foreign key forbids dropping.
    op.drop_column("inspections", "regions")
