"""Sign in and out. Sessions are renewed on login; failures are rate-limited per IP and e-mail."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.wrappers import Response

from merchant_portal.context import client_ip, db
from merchant_portal.extensions import login_manager
from merchant_portal.redirects import safe_next
from merchant_portal.security import (
    clear_login_failures,
    login_blocked_for,
    record_login_failure,
)
from pos import accounts
from pos.models import MerchantStatus, Role, User

bp = Blueprint("auth", __name__)


@dataclass
class PortalUser:
    """What flask-login keeps about the signed-in person (the model stays Flask-free)."""

    id: int
    email: str
    role: str
    merchant_id: int | None
    display_name: str
    is_active: bool = True
    is_authenticated: bool = True
    is_anonymous: bool = False

    def get_id(self) -> str:
        return str(self.id)

    @classmethod
    def from_model(cls, user: User) -> PortalUser:
        return cls(
            user.id, user.email, user.role.value, user.merchant_id, user.display_name or user.email
        )


@login_manager.user_loader
def _load_user(user_id: str) -> PortalUser | None:
    if not user_id.isdigit():
        return None
    user = db().get(User, int(user_id))
    if user is None or not user.active:
        return None
    merchant = user.merchant
    if (
        user.role is Role.CASHIER
        and merchant is not None
        and (merchant.status is MerchantStatus.SUSPENDED)
    ):
        return None
    return PortalUser.from_model(user)


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


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    if request.method == "GET":
        return render_template("login.html", email="")
    email = request.form.get("email", "")
    password = request.form.get("password", "")
    ip = client_ip()
    wait = login_blocked_for(ip, email)
    if wait:
        minutes = (wait + 59) // 60
        message = gettext(
            "Too many sign-in attempts. Try again in %(minutes)s minute(s).", minutes=minutes
        )
        return render_template("login.html", email=email, error=message), 429
    user = accounts.authenticate(db(), email, password)
    if user is None:
        record_login_failure(ip, email)
        accounts.audit(db(), "auth.login_failed", ip=ip, detail={"email": email[:254]})
        db().commit()
        return render_template(
            "login.html", email=email, error=gettext("Wrong e-mail or password.")
        ), 401
    clear_login_failures(ip, email)
    accounts.audit(db(), "auth.login", actor_user_id=user.id, merchant_id=user.merchant_id, ip=ip)
    db().commit()
    session.clear()  # a new session on login: no fixation
    login_user(PortalUser.from_model(user))
    return redirect(_safe_next(request.args.get("next")) or home_for(user.role.value))


@bp.post("/logout")
@login_required
def logout() -> Response:
    logout_user()
    session.clear()
    flash(gettext("You are signed out."))
    return redirect(url_for("auth.login"))
