"""The merchant portal: a Flask app factory and one blueprint per surface."""

from __future__ import annotations

from typing import Any

from flask import Flask, g

from pos.runtime import Runtime, connect_runtime
from pos.settings import Settings


def create_app(
    settings: Settings | None = None,
    runtime: Runtime | None = None,
    test_config: dict[str, Any] | None = None,
) -> Flask:
    """Build the app. No migrations here (`cryptocity db upgrade` does them)."""
    if runtime is None:
        runtime = connect_runtime(settings or Settings.from_env())
    settings = runtime.settings
    app = Flask(__name__)
    from merchant_portal.converters import BigintConverter

    app.url_map.converters["int"] = BigintConverter  # before any route is added
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not settings.is_demo,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=not settings.is_demo,
        PERMANENT_SESSION_LIFETIME=12 * 3600,  # one long shift at the counter
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["cryptocity"] = runtime

    from merchant_portal import (
        account,
        api,
        auth,
        branding,
        checkout,
        choice,
        errors,
        fees,
        health,
        i18n,
        integrations,
        local_time,
        media,
        merchant,
        merchant_invoices,
        merchant_staff,
        metrics,
        operator,
        operator_rates,
        refund_claim,
        refunds_pages,
        reports,
        security,
        terminal,
    )
    from merchant_portal.extensions import csrf, login_manager

    media.init_app(app)  # before CSRF: upload routes need a larger body limit than 1 MB
    csrf.init_app(app)
    login_manager.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    i18n.init_app(app)
    local_time.init_app(app)  # the `localtime` filter of every page
    blueprints = (
        health.bp,
        i18n.bp,
        auth.bp,
        account.bp,
        terminal.bp,
        choice.bp,
        merchant.bp,
        merchant_staff.bp,
        branding.bp,
        media.bp,
        merchant_invoices.bp,
        operator.bp,
        operator_rates.bp,
        metrics.bp,
        reports.bp,
        fees.bp,
        refund_claim.bp,
        refunds_pages.bp,
        checkout.bp,
        integrations.bp,
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    api.init_app(app)  # mounts /api/v1 and exempts only that blueprint from CSRF

    @app.teardown_appcontext
    def _close_db(_exc: BaseException | None) -> None:
        session = g.pop("db", None)
        if session is not None:
            session.close()

    return app
