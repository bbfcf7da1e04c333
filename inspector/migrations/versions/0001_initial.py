"""models, inspections and reviews

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "inspections",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("source_name", sa.String(500), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("scored_at", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("heatmap_path", sa.Text(), nullable=True),
        sa.Column("overlay_path", sa.Text(), nullable=True),
        sa.Column("stored_path", sa.Text(), nullable=True),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("models.id"), nullable=True),
        sa.Column("processing_ms", sa.Float(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'done', 'error')", name="ck_inspections_status"),
        sa.CheckConstraint("verdict IS NULL OR verdict IN ('ok', 'defect', 'error')", name="ck_inspections_verdict"),
    )
    op.create_index("ix_inspections_received_at", "inspections", ["received_at"])
    op.create_index("ix_inspections_status", "inspections", ["status"])
    op.create_index("ix_inspections_verdict", "inspections", ["verdict"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("inspection_id", sa.Integer(), sa.ForeignKey("inspections.id"), nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("label IN ('defect', 'ok')", name="ck_reviews_label"),
    )
    op.create_index("ix_reviews_inspection_id", "reviews", ["inspection_id"])


def downgrade() -> None:
    op.drop_table("reviews")
    op.drop_table("inspections")
    op.drop_table("models")
