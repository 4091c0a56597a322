"""Sign in and out, the second-factor step, and the checks every signed-in request passes.

Each attempt is counted before the password is checked (merchant_portal.security). A signed-in
session carries the user's `session_generation`; the user loader refuses an old one, so signing
out, a password change or reset, or disabling the user ends that session everywhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.wrappers import Response

from merchant_portal.context import client_ip, db
from merchant_portal.extensions import login_manager
from merchant_portal.redirects import safe_next
from merchant_portal.security import (
    clear_login_attempts,
    clear_second_factor_attempts,
    reserve_login_attempt,
    reserve_second_factor_attempt,
)
from pos import accounts, credentials
from pos.errors import ShopSuspendedError
from pos.models import MerchantStatus, Role, User

bp = Blueprint("auth", __name__)

SESSION_GENERATION_KEY = "_generation"
PENDING_KEY = "_pending_2fa"  # password checked, second factor not yet: not signed in
PENDING_SECONDS = 5 * 60
# Pages a signed-in user may reach before changing a one-time password or enrolling 2FA.
_ALWAYS_ALLOWED = {"auth.logout", "auth.index", "static", "i18n.switch"}
_PUBLIC_BLUEPRINTS = {"api", "checkout", "health", "metrics", "refund_claim", "i18n"}


@dataclass
class PortalUser:
    """What flask-login keeps about the signed-in person (the model stays Flask-free)."""

    id: int
    email: str
    role: str
    merchant_id: int | None
    display_name: str
    must_change_password: bool = False
    totp_enabled: bool = False
    is_active: bool = True
    is_authenticated: bool = True
    is_anonymous: bool = False

    def get_id(self) -> str:
        return str(self.id)

    @property
    def needs_totp_enrolment(self) -> bool:
        return self.role == Role.OPERATOR.value and not self.totp_enabled

    @classmethod
    def from_model(cls, user: User) -> PortalUser:
        return cls(
            user.id,
            user.email,
            user.role.value,
            user.merchant_id,
            user.display_name or user.email,
            must_change_password=user.must_change_password,
            totp_enabled=user.totp_enabled,
        )


@login_manager.user_loader
def _load_user(user_id: str) -> PortalUser | None:
    if not user_id.isdigit():
        return None
    user = db().get(User, int(user_id))
    if user is None or not user.active:
        return None
    # A session from before the last sign-out / password change / reset is dead, wherever
    # its cookie was copied to. (The remember-me cookie is not used, so a session is the
    # only way in.)
    if session.get(SESSION_GENERATION_KEY) != user.session_generation:
        return None
    merchant = user.merchant
    if (
        user.role is Role.CASHIER
        and merchant is not None
        and (merchant.status is MerchantStatus.SUSPENDED)
    ):
        return None
    return PortalUser.from_model(user)


@bp.before_app_request
def _require_own_password_and_2fa() -> Response | None:
    """A one-time password must be changed, and an operator must enrol 2FA, before any page."""
    endpoint = request.endpoint or ""
    if request.blueprint in _PUBLIC_BLUEPRINTS or endpoint in _ALWAYS_ALLOWED:
        return None
    if not current_user.is_authenticated:
        return None
    if current_user.must_change_password:
        if endpoint != "account.password":
            return redirect(url_for("account.password"))
        return None
    if current_user.needs_totp_enrolment and not endpoint.startswith("account.two_factor"):
        return redirect(url_for("account.two_factor"))
    return None


def sign_in(user: User) -> None:
    """Start a fresh signed-in session for `user` (no fixation: the old one is dropped)."""
    session.clear()
    login_user(PortalUser.from_model(user))
    session[SESSION_GENERATION_KEY] = user.session_generation


def home_for(role: str) -> str:
    return {
        "operator": url_for("operator.index"),
        "owner": url_for("merchant.index"),
        "cashier": url_for("terminal.index"),
    }[role]


def _safe_next(target: str | None) -> str | None:
    # Only local paths: an open redirect would let a phishing link borrow our login page.
    return safe_next(target)


@bp.get("/")
def index() -> Response:
    if current_user.is_authenticated:
        return redirect(home_for(current_user.role))
    return redirect(url_for("auth.login"))


def _too_many(wait: int, template: str, **context: Any) -> tuple[str, int, dict[str, str]]:
    if wait >= 60:
        minutes = (wait + 59) // 60
        message = gettext(
            "Too many sign-in attempts. Try again in %(minutes)s minute(s).", minutes=minutes
        )
    else:
        message = gettext("Too many sign-in attempts. Try again in %(seconds)d s.", seconds=wait)
    page = render_template(template, error=message, **context)
    return page, 429, {"Retry-After": str(wait)}


def _finish(user: User, method: str, next_url: str | None) -> Response:
    ip = client_ip()
    accounts.audit(
        db(),
        "auth.login",
        actor_user_id=user.id,
        merchant_id=user.merchant_id,
        ip=ip,
        detail={"second_factor": method} if method else None,
    )
    db().commit()
    sign_in(user)
    return redirect(next_url or home_for(user.role.value))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int] | tuple[str, int, dict[str, str]]:
    if request.method == "GET":
        return render_template("login.html", email="")
    email = request.form.get("email", "")
    password = request.form.get("password", "")
    ip = client_ip()
    # Counted before the password is checked: parallel guesses cannot all be evaluated.
    wait = reserve_login_attempt(ip, email)
    if wait:
        return _too_many(wait, "login.html", email=email)
    try:
        user = accounts.authenticate(db(), email, password)
    except ShopSuspendedError:
        clear_login_attempts(ip, email)  # the password was right
        message = gettext(
            "This shop is suspended, so its tills are closed. Ask the shop's owner or the "
            "zone's operators."
        )
        return render_template("login.html", email=email, error=message), 403
    if user is None:
        accounts.audit(db(), "auth.login_failed", ip=ip, detail={"email": email[:254]})
        db().commit()
        return render_template(
            "login.html", email=email, error=gettext("Wrong e-mail or password.")
        ), 401
    clear_login_attempts(ip, email)
    next_url = _safe_next(request.args.get("next"))
    if user.totp_enabled:
        db().commit()  # last_login_at
        session.clear()
        session[PENDING_KEY] = {
            "user_id": user.id,
            "generation": user.session_generation,
            "at": int(time.time()),
            "next": next_url,
        }
        return redirect(url_for("auth.second_factor"))
    return _finish(user, "", next_url)


def _pending_user() -> tuple[User, dict[str, Any]] | None:
    pending = session.get(PENDING_KEY)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None
    user = db().get(User, pending.get("user_id", 0))
    if user is None or not user.active or user.session_generation != pending.get("generation"):
        return None
    return user, pending


@bp.route("/login/2fa", methods=["GET", "POST"])
def second_factor() -> Response | str | tuple[str, int] | tuple[str, int, dict[str, str]]:
    found = _pending_user()
    if found is None:
        session.pop(PENDING_KEY, None)
        if request.method == "POST":
            flash(gettext("The sign-in took too long. Please sign in again."))
        return redirect(url_for("auth.login"))
    user, pending = found
    if request.method == "GET":
        return render_template("login_2fa.html")
    wait = reserve_second_factor_attempt(user.id)
    if wait:
        return _too_many(wait, "login_2fa.html")
    code = request.form.get("code", "")[:64]
    method = credentials.check_second_factor(db(), user, code, ip=client_ip())
    if method is None:
        accounts.audit(
            db(),
            "auth.2fa_failed",
            actor_user_id=user.id,
            merchant_id=user.merchant_id,
            ip=client_ip(),
        )
        db().commit()
        error = gettext("This code is wrong or was already used.")
        return render_template("login_2fa.html", error=error), 401
    clear_second_factor_attempts(user.id)
    if method == "recovery":
        left = len(user.recovery_code_hashes)
        flash(
            gettext("You signed in with a recovery code. Recovery codes left: %(num)d.", num=left)
        )
    return _finish(user, method, pending.get("next"))


@bp.post("/logout")
@login_required
def logout() -> Response:
    user = db().get(User, current_user.id)
    if user is not None:
        credentials.end_sessions(user)  # a copy of this cookie stops working too
        db().commit()
    logout_user()
    session.clear()
    flash(gettext("You are signed out."))
    return redirect(url_for("auth.login"))
