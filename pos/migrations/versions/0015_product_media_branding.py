"""product pictures and categories; merchant branding (issue #17 items 6, 9)

- media_blobs: cleaned, resized images keyed by the SHA-256 of their bytes (served forever at
  /media/<sha256>.<ext>); in the database so every web process and backend serves the same
- catalog_items: `category` (text, nullable) and `image_sha256` (the product's picture)
- merchant_branding: one row per merchant with a logo, an accent colour ('#rrggbb') and the
  store's language for shoppers without a language cookie

Revision ID: 0015_product_media_branding
Revises: 0014_wallet_domains
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_product_media_branding"
down_revision = "0014_wallet_domains"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "media_blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("ext", sa.String(length=8), nullable=False),
        sa.Column("content_type", sa.String(length=40), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("width", BIGINT, nullable=False),
        sa.Column("height", BIGINT, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_media_blobs")),
    )
    op.create_table(
        "merchant_branding",
        sa.Column("merchant_id", BIGINT, nullable=False),
        sa.Column("logo_sha256", sa.String(length=64), nullable=True),
        sa.Column("accent_colour", sa.String(length=7), nullable=True),
        sa.Column("store_language", sa.String(length=2), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "store_language IN ('en', 'ru', 'kk')",
            name=op.f("ck_merchant_branding_store_language"),
        ),
        sa.CheckConstraint(
            "length(accent_colour) = 7", name=op.f("ck_merchant_branding_accent_colour")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_merchant_branding_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["logo_sha256"],
            ["media_blobs.sha256"],
            name=op.f("fk_merchant_branding_logo_sha256_media_blobs"),
        ),
        sa.PrimaryKeyConstraint("merchant_id", name=op.f("pk_merchant_branding")),
    )
    with op.batch_alter_table("catalog_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("category", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("image_sha256", sa.String(length=64), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_catalog_items_image_sha256_media_blobs"),
            "media_blobs",
            ["image_sha256"],
            ["sha256"],
        )


def downgrade() -> None:
    with op.batch_alter_table("catalog_items", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_catalog_items_image_sha256_media_blobs"), type_="foreignkey"
        )
        batch_op.drop_column("image_sha256")
        batch_op.drop_column("category")
    op.drop_table("merchant_branding")
    op.drop_table("media_blobs")
