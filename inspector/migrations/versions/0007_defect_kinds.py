"""reviews.kind: what a confirmed defect is; defect_kinds: the kinds QA picks from per station

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("kind", sa.String(100), nullable=True))
    op.create_table(
        "defect_kinds",
        sa.Column("station", sa.String(200), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("defect_kinds")
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("kind")
