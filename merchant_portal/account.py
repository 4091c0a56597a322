"""The signed-in person's own account: change the password, two-factor sign-in (TOTP).

Operators must use two-factor sign-in (they are sent here until they enrol); owners may turn it
on or off. Pages that show the secret or the recovery codes are never cached.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext
from flask_login import current_user
from markupsafe import Markup
from werkzeug.wrappers import Response

from merchant_portal.auth import SESSION_GENERATION_KEY, home_for
from merchant_portal.cache_control import forbid_caching
from merchant_portal.context import client_ip, db
from merchant_portal.security import require_role
from pos import credentials, qr, totp
from pos.errors import ValidationError
from pos.models import Role, User
from pos.password_policy import MAX_PASSWORD_LENGTH, PasswordPolicyError
from pos.passwords import MIN_PASSWORD_LENGTH

bp = Blueprint("account", __name__, url_prefix="/account")

ENROL_SECRET_KEY = "_totp_enrol_secret"  # the secret being enrolled, until a code confirms it
_TWO_FACTOR_ROLES = (Role.OWNER.value, Role.OPERATOR.value)
_ALL_ROLES = tuple(role.value for role in Role)


def _no_store(page: str, status: int = 200) -> Response:
    # A TOTP secret or recovery codes must not stay in a cache or the back-button history.
    return forbid_caching(make_response(page, status))


def _me() -> User:
    user = db().get(User, current_user.id)
    if user is None:
        abort(404)
    return user


def _keep_this_session(user: User) -> None:
    """The change ended every session of the user; this browser stays signed in."""
    session[SESSION_GENERATION_KEY] = user.session_generation


def password_error_message(exc: ValidationError) -> str:
    """The translated sentence for a refused password."""
    if isinstance(exc, PasswordPolicyError):
        messages = {
            "short": gettext(
                "The password needs at least %(count)d characters.", count=MIN_PASSWORD_LENGTH
            ),
            "long": gettext(
                "The password is limited to %(count)d characters.", count=MAX_PASSWORD_LENGTH
            ),
            "email": gettext("The password must not be your e-mail address."),
            "common": gettext(
                "This password is too common; choose one that is hard to guess "
                "(a few unrelated words work well)."
            ),
        }
        return str(messages[exc.reason])
    if exc.field == "current_password":
        return str(gettext("The current password is wrong."))
    return str(gettext("Choose a password different from the current one."))


@bp.route("/password", methods=["GET", "POST"])
@require_role(*_ALL_ROLES)
def password() -> Response | str | tuple[str, int]:
    forced = bool(current_user.must_change_password)
    if request.method == "GET":
        return render_template(
            "account_password.html", errors={}, forced=forced, min_length=MIN_PASSWORD_LENGTH
        )
    current = request.form.get("current_password", "")
    new = request.form.get("new_password", "")
    errors: dict[str, str] = {}
    if new != request.form.get("confirm_password", ""):
        errors["confirm_password"] = gettext("The two new passwords differ.")
    user = _me()
    if not errors:
        try:
            credentials.change_password(db(), user, current, new, ip=client_ip())
        except ValidationError as exc:
            db().rollback()
            errors[exc.field or "new_password"] = password_error_message(exc)
    if errors:
        page = render_template(
            "account_password.html", errors=errors, forced=forced, min_length=MIN_PASSWORD_LENGTH
        )
        return page, 400
    db().commit()
    _keep_this_session(user)
    flash(gettext("Your password was changed. Other sessions were signed out."))
    if user.role is Role.OPERATOR and not user.totp_enabled:
        return redirect(url_for("account.two_factor"))
    return redirect(home_for(user.role.value))


def _enrol_page(user: User, error: str | None = None, status: int = 200) -> Response:
    secret = session.get(ENROL_SECRET_KEY)
    if not isinstance(secret, str):
        secret = totp.new_secret()
        session[ENROL_SECRET_KEY] = secret
    uri = totp.provisioning_uri(secret, user.email)
    svg = qr.qr_svg(uri)
    svg = svg[svg.index("<svg") :]  # inline: without the XML declaration
    page = render_template(
        "account_2fa.html",
        user=user,
        secret=secret,
        uri=uri,
        qr_svg=Markup(svg),
        error=error,
        required=user.role is Role.OPERATOR,
    )
    return _no_store(page, status)


@bp.get("/2fa")
@require_role(*_TWO_FACTOR_ROLES)
def two_factor() -> Response | str:
    user = _me()
    if user.totp_enabled:
        return render_template(
            "account_2fa.html",
            user=user,
            required=user.role is Role.OPERATOR,
            remaining=len(user.recovery_code_hashes),
        )
    return _enrol_page(user)


@bp.post("/2fa/enable")
@require_role(*_TWO_FACTOR_ROLES)
def two_factor_enable() -> Response:
    user = _me()
    secret = session.get(ENROL_SECRET_KEY)
    if user.totp_enabled or not isinstance(secret, str):
        return redirect(url_for("account.two_factor"))
    try:
        codes = credentials.enable_totp(
            db(), user, secret, request.form.get("code", "")[:16], ip=client_ip()
        )
    except ValidationError:
        db().rollback()
        message = gettext("The code does not match. Check that the phone's clock is right.")
        return _enrol_page(user, message, 400)
    db().commit()
    session.pop(ENROL_SECRET_KEY, None)
    page = render_template(
        "account_recovery_codes.html", codes=codes, next_url=home_for(user.role.value)
    )
    return _no_store(page)


@bp.post("/2fa/disable")
@require_role(Role.OWNER.value)  # operators must keep it
def two_factor_disable() -> Response | tuple[str, int]:
    user = _me()
    if not user.totp_enabled:
        return redirect(url_for("account.two_factor"))
    try:
        credentials.disable_totp(db(), user, request.form.get("password", ""), ip=client_ip())
    except ValidationError:
        db().rollback()
        page = render_template(
            "account_2fa.html",
            user=user,
            required=False,
            remaining=len(user.recovery_code_hashes),
            error=gettext("The password is wrong."),
        )
        return page, 400
    db().commit()
    _keep_this_session(user)
    flash(gettext("Two-factor sign-in is off."))
    return redirect(url_for("account.two_factor"))
