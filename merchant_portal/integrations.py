"""The owner's integration pages: API keys (shown once), webhooks and their delivery log."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from merchant_portal.cache_control import no_store
from merchant_portal.context import client_ip, db, settings
from merchant_portal.errors import translated
from merchant_portal.forms import is_whole_number
from merchant_portal.security import require_role
from pos import accounts, integrations, network_policy, shop_domains
from pos.errors import PosError, ValidationError
from pos.integrations import (
    WEBHOOK_EVENT_TYPES,
    ApiKey,
    Scope,
    Webhook,
    WebhookDelivery,
)
from pos.models import InvoiceEvent, Merchant

bp = Blueprint("integrations", __name__, url_prefix="/merchant/integrations")
DELIVERY_LOG_SIZE = 50
# pos.network_policy's refusals of a webhook URL, by their code.
URL_ERRORS = {
    "too_long": _l("The URL is longer than 500 characters."),
    "malformed": _l("The URL is malformed."),
    "scheme": _l("The URL must be a full http(s) address."),
    "credentials": _l("Put no user name or password in the URL; verify our signature instead."),
    "https_required": _l("Webhook URLs must use https."),
    "host": _l("The URL's host is malformed."),
    "not_public": _l(
        "Webhook URLs must point to a public internet address, not a local, private or "
        "reserved one."
    ),
    "unresolvable": _l("The URL's host name does not resolve; check it for typos."),
}
# The delivery log's reasons for a POST that was not sent (the rest are the network's words).
DELIVERY_ERRORS = {
    network_policy.DELIVERY_REFUSED: _l(
        "Not sent: the URL's host is not a public internet address."
    ),
    network_policy.DELIVERY_UNRESOLVED: _l("Not sent: the URL's host name does not resolve."),
}


def _merchant_id() -> int:
    merchant_id: int = current_user.merchant_id
    return merchant_id


def _index(
    status: int = 200,
    errors: dict[str, str] | None = None,
    new_token: str | None = None,
    new_key: ApiKey | None = None,
    domains_text: str | None = None,
) -> tuple[str, int]:
    session = db()
    keys = session.scalars(
        select(ApiKey).where(ApiKey.merchant_id == _merchant_id()).order_by(ApiKey.id.desc())
    ).all()
    hooks = session.scalars(
        select(Webhook).where(Webhook.merchant_id == _merchant_id()).order_by(Webhook.id)
    ).all()
    page = render_template(
        "integrations/index.html",
        keys=keys,
        hooks=hooks,
        scopes=[s.value for s in Scope],
        event_types=WEBHOOK_EVENT_TYPES,
        errors=errors or {},
        new_token=new_token,
        new_key=new_key,
        default_rate=integrations.DEFAULT_RATE_LIMIT_PER_MINUTE,
        shop_domains=(
            "\n".join(shop_domains.domains_of(_merchant().shop_domains))
            if domains_text is None
            else domains_text  # the owner's text back, with the error
        ),
    )
    return page, status


def _merchant() -> Merchant:
    merchant = db().get(Merchant, _merchant_id())
    if merchant is None:
        abort(404)
    return merchant


def _field_error(exc: PosError) -> dict[str, str]:
    if isinstance(exc, network_policy.AddressRefusedError) and exc.code in URL_ERRORS:
        return {"url": str(URL_ERRORS[exc.code])}
    field = exc.field if isinstance(exc, ValidationError) and exc.field else "form"
    return {field: translated(exc)}


@bp.get("/")
@require_role("owner")
def index() -> tuple[str, int]:
    return _index()


@bp.post("/domains")
@require_role("owner")
def save_domains() -> Response | tuple[str, int]:
    """The shop's domains: an invoice's `redirect_url` must lead to one of them."""
    session = db()
    try:
        accounts.set_shop_domains(
            session, _merchant(), request.form.get("shop_domains", ""), current_user.id
        )
        session.commit()
    except PosError as exc:
        session.rollback()
        return _index(400, _field_error(exc), domains_text=request.form.get("shop_domains", ""))
    flash(gettext("Shop domains saved."))
    return redirect(url_for("integrations.index"))


@bp.post("/keys")
@require_role("owner")
@no_store  # the answer shows the new API token, once
def create_key() -> tuple[str, int]:
    session = db()
    raw_rate = request.form.get("rate_limit_per_minute", "").strip()
    try:
        if not is_whole_number(raw_rate):
            raise ValidationError(
                gettext("the rate limit is a whole number"), field="rate_limit_per_minute"
            )
        key, token = integrations.create_api_key(
            session,
            _merchant_id(),
            request.form.get("name", ""),
            request.form.getlist("scopes"),
            int(raw_rate),
            actor_user_id=current_user.id,
        )
        session.commit()
    except PosError as exc:
        session.rollback()
        return _index(400, _field_error(exc))
    # Rendered, not flashed: the token must never sit in the session cookie.
    return _index(201, new_token=token, new_key=key)


@bp.post("/keys/<int:key_id>/revoke")
@require_role("owner")
def revoke_key(key_id: int) -> Response:
    session = db()
    key = integrations.get_api_key(session, key_id, _merchant_id())
    integrations.revoke_api_key(session, key, current_user.id)
    session.commit()
    flash(gettext("Key %(prefix)s revoked.", prefix=key.prefix))
    return redirect(url_for("integrations.index"))


@bp.post("/webhooks")
@require_role("owner")
def create_webhook() -> Response | tuple[str, int]:
    session = db()
    try:
        hook = integrations.create_webhook(
            session,
            settings(),
            _merchant_id(),
            request.form.get("url", ""),
            request.form.getlist("event_types"),
            actor_user_id=current_user.id,
        )
        session.commit()
    except PosError as exc:
        session.rollback()
        return _index(400, _field_error(exc))
    return redirect(url_for("integrations.webhook", webhook_id=hook.id))


def _webhook_page(
    hook: Webhook, status: int = 200, errors: dict[str, str] | None = None
) -> tuple[str, int]:
    rows = (
        db()
        .execute(
            select(WebhookDelivery, InvoiceEvent.type, InvoiceEvent.invoice_id)
            .join(InvoiceEvent, InvoiceEvent.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.webhook_id == hook.id)
            .order_by(WebhookDelivery.id.desc())
            .limit(DELIVERY_LOG_SIZE)
        )
        .all()
    )
    page = render_template(
        "integrations/webhook.html",
        hook=hook,
        deliveries=rows,
        delivery_errors={reason: str(text) for reason, text in DELIVERY_ERRORS.items()},
        event_types=WEBHOOK_EVENT_TYPES,
        errors=errors or {},
    )
    return page, status


@bp.get("/webhooks/<int:webhook_id>")
@require_role("owner")
@no_store  # the page shows the signing secret
def webhook(webhook_id: int) -> tuple[str, int]:
    return _webhook_page(integrations.get_webhook(db(), webhook_id, _merchant_id()))


@bp.post("/webhooks/<int:webhook_id>")
@require_role("owner")
@no_store  # a refused change re-renders the page with the signing secret
def update_webhook(webhook_id: int) -> Response | tuple[str, int]:
    session = db()
    hook = integrations.get_webhook(session, webhook_id, _merchant_id())
    try:
        integrations.update_webhook(
            session,
            settings(),
            hook,
            request.form.get("url", ""),
            request.form.getlist("event_types"),
            request.form.get("active") == "on",
            actor_user_id=current_user.id,
        )
        session.commit()
    except PosError as exc:
        session.rollback()
        return _webhook_page(
            integrations.get_webhook(session, webhook_id, _merchant_id()), 400, _field_error(exc)
        )
    flash(gettext("Webhook saved."))
    return redirect(url_for("integrations.webhook", webhook_id=hook.id))


@bp.post("/webhooks/<int:webhook_id>/delete")
@require_role("owner")
def delete_webhook(webhook_id: int) -> Response:
    session = db()
    hook = integrations.get_webhook(session, webhook_id, _merchant_id())
    integrations.delete_webhook(session, hook, current_user.id)
    session.commit()
    flash(gettext("Webhook deleted."))
    return redirect(url_for("integrations.index"))


@bp.post("/deliveries/<int:delivery_id>/redeliver")
@require_role("owner")
def redeliver(delivery_id: int) -> Response:
    session = db()
    delivery = integrations.get_delivery(session, delivery_id, _merchant_id())
    integrations.redeliver(session, delivery, _merchant_id(), current_user.id, client_ip())
    session.commit()
    flash(gettext("Queued for redelivery; the worker sends it within seconds."))
    return redirect(url_for("integrations.webhook", webhook_id=delivery.webhook_id))
