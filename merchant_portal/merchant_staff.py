"""The owner's people and products: cashiers (invite, disable, new password) and the catalog.

A new cashier gets a one-time password shown once on the answer page (never stored in clear,
never sent by mail); the owner hands it over at the counter, and the cashier must choose their
own at the first sign-in. Another merchant's cashier or
product answers 404.
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
    url_for,
)
from flask_babel import gettext
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from merchant_portal.branding import image_error, uploaded_bytes
from merchant_portal.cache_control import no_store
from merchant_portal.context import client_ip, db
from merchant_portal.forms import field_error, form_values, parse_tenge
from merchant_portal.security import require_role
from pos import accounts, catalog, credentials, money
from pos.errors import PosError, ValidationError
from pos.models import Role, User

bp = Blueprint("merchant_staff", __name__, url_prefix="/merchant")
# One product at the counter costs at most 10 million ₸ (a cart of them is capped per invoice).
MAX_PRODUCT_PRICE_TIYN = 10_000_000 * money.TIYN_PER_KZT


def one_time_password() -> str:
    """16 URL-safe characters (96 bits): typed once, then changed at the first sign-in."""
    return credentials.generate_one_time_password()


def _cashiers() -> list[User]:
    return list(
        db().scalars(
            select(User)
            .where(User.merchant_id == current_user.merchant_id, User.role == Role.CASHIER)
            .order_by(User.email)
        )
    )


def _own_cashier(user_id: int) -> User:
    user = db().get(User, user_id)
    if user is None or user.merchant_id != current_user.merchant_id or user.role != Role.CASHIER:
        abort(404)
    return user


def _render_cashiers(
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    shown_password: tuple[str, str] | None = None,
) -> str:
    return render_template(
        "merchant_cashiers.html",
        cashiers=_cashiers(),
        errors=errors or {},
        form=form or {},
        shown_password=shown_password,
    )


@bp.get("/cashiers")
@require_role("owner")
def cashiers() -> str:
    return _render_cashiers()


@bp.post("/cashiers")
@require_role("owner")
@no_store  # the answer shows the one-time password
def invite() -> Response | tuple[str, int]:
    form = form_values(("email", "display_name"))
    session = db()
    password = one_time_password()
    try:
        if len(form["display_name"]) > 120:
            raise ValidationError(
                gettext("the name is limited to 120 characters"), field="display_name"
            )
        user = accounts.create_user(
            session,
            form["email"],
            password,
            Role.CASHIER,
            merchant_id=current_user.merchant_id,
            display_name=form["display_name"],
            actor_user_id=current_user.id,
            one_time_password=True,
        )
        session.commit()
    except accounts.EmailInUseError:
        # One answer whether the address is taken here or in another shop: an owner must not
        # learn who else uses the zone (the operator's registry keeps the precise message).
        session.rollback()
        neutral = gettext("This e-mail cannot be invited; ask the person for another address.")
        return _render_cashiers({"email": neutral}, form), 400
    except PosError as exc:
        session.rollback()
        return _render_cashiers(field_error(exc, "email"), form), 400
    return make_response(_render_cashiers(shown_password=(user.email, password)))


@bp.post("/cashiers/<int:user_id>/<action>")
@require_role("owner")
@no_store  # a reset shows the new one-time password
def change_cashier(user_id: int, action: str) -> Response:
    if action not in ("disable", "enable", "reset"):
        abort(404)
    user = _own_cashier(user_id)
    session = db()

    if action == "reset":
        # Their sessions end; they must choose their own password at the next sign-in.
        password = credentials.reset_password(session, user, current_user.id, ip=client_ip())
        session.commit()
        return make_response(_render_cashiers(shown_password=(user.email, password)))
    credentials.set_active(session, user, action == "enable", current_user.id, ip=client_ip())
    session.commit()
    flash(
        gettext("%(email)s: enabled.", email=user.email)
        if user.active
        else gettext("%(email)s: disabled.", email=user.email)
    )
    return redirect(url_for("merchant_staff.cashiers"))


# --- products (the terminal's cart mode) ---------------------------------------------------


def _render_products(
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    error_item_id: int | None = None,
) -> str:
    items = catalog.list_items(db(), current_user.merchant_id, active_only=False)
    return render_template(
        "merchant_products.html",
        items=items,
        categories=catalog.categories(items),
        errors=errors or {},
        error_item_id=error_item_id,
        form=form or {},
    )


def _product_error(exc: PosError, default_field: str) -> dict[str, str]:
    if isinstance(exc, ValidationError) and exc.field == "image":
        return {"image": image_error(exc)}
    return field_error(exc, default_field)


@bp.get("/products")
@require_role("owner")
def products() -> str:
    return _render_products()


@bp.post("/products")
@require_role("owner")
def add_product() -> Response | tuple[str, int]:
    form = form_values(("name", "price", "category"))
    session = db()
    try:
        price_tiyn = parse_tenge(form["price"], "price", MAX_PRODUCT_PRICE_TIYN)
        item = catalog.add_item(
            session, current_user.merchant_id, form["name"], price_tiyn, form["category"]
        )
        picture = uploaded_bytes("image")
        if picture:  # a picture is optional when adding
            catalog.set_image(session, item, picture)
        session.commit()
    except PosError as exc:
        session.rollback()
        return _render_products(_product_error(exc, "name"), form), 400
    return redirect(url_for("merchant_staff.products"))


@bp.post("/products/<int:item_id>/edit")
@require_role("owner")
def edit_product(item_id: int) -> Response | tuple[str, int]:
    """Change the category and, if a file is chosen, the picture."""
    session = db()
    try:
        item = catalog.get_item(session, current_user.merchant_id, item_id)
    except PosError:
        abort(404)
    try:
        catalog.set_category(session, item, request.form.get("category", ""))
        picture = uploaded_bytes("image")
        if picture:
            catalog.set_image(session, item, picture)
        elif request.form.get("remove_image"):
            item.image_sha256 = None
        session.commit()
    except PosError as exc:
        session.rollback()
        return _render_products(_product_error(exc, "category"), error_item_id=item_id), 400
    return redirect(url_for("merchant_staff.products"))


@bp.post("/products/<int:item_id>/<action>")
@require_role("owner")
def change_product(item_id: int, action: str) -> Response:
    if action not in ("hide", "show"):
        abort(404)
    try:
        item = catalog.get_item(db(), current_user.merchant_id, item_id)
    except PosError:
        abort(404)
    item.active = action == "show"
    db().commit()
    return redirect(url_for("merchant_staff.products"))
