"""The merchant REST API under /api/v1: bearer keys, JSON errors, a generated OpenAPI document.

Register with `init_app(app)`: it mounts the blueprint and exempts it from CSRF (requests carry
a bearer key, not a cookie, so there is no ambient authority to forge).
"""

from __future__ import annotations

from flask import Blueprint, Flask

PREFIX = "/api/v1"
bp = Blueprint("api", __name__, url_prefix=PREFIX)


def init_app(app: Flask) -> None:
    """Mount the API on `app` (once) and exempt only this blueprint from CSRF."""
    from merchant_portal.extensions import csrf

    if bp.name in app.blueprints:
        return
    csrf.exempt(bp)
    app.register_blueprint(bp)


def _load_views() -> None:
    # Views register their routes on `bp` at import; errors attach to `bp` only.
    from merchant_portal.api import docs, errors, invoices, statement  # noqa: F401

    errors.register(bp)


_load_views()
