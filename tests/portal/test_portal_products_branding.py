"""Product pictures and categories, the terminal's grid, and a merchant's branding on the
shopper's pages — through the Flask client, with real uploads, SQLite and Redis."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from merchant_portal import choice
from pos import branding
from pos.catalog import CatalogItem
from pos.media import MediaBlob
from pos.runtime import Runtime

from image_support import jpeg_with_exif, multipart, png_bytes
from portal_helpers import csrf_from

Client = Callable[[str | None], FlaskClient]
MEDIA_URL = re.compile(r"/media/([0-9a-f]{64})\.webp")


def _add_product(
    client: FlaskClient, name: str, category: str, picture: bytes | None, price: str = "900"
) -> tuple[int, str]:
    fields = {
        "csrf_token": csrf_from(client, "/merchant/products"),
        "name": name,
        "price": price,
        "category": category,
    }
    body, content_type = multipart(fields, {} if picture is None else {"image": picture})
    response = client.post("/merchant/products", data=body, content_type=content_type)
    return response.status_code, response.get_data(as_text=True)


def _blob_count(runtime: Runtime) -> int:
    with runtime.session_factory() as session:
        return session.scalar(select(func.count()).select_from(MediaBlob)) or 0


def test_a_product_picture_is_served_by_its_hash_for_a_year(
    as_user: Client, runtime: Runtime
) -> None:
    owner = as_user("owner")
    assert _add_product(owner, "Latte", "Coffee", jpeg_with_exif())[0] == 302
    page = owner.get("/merchant/products").get_data(as_text=True)
    sha256 = MEDIA_URL.search(page)
    assert sha256 is not None
    # Anyone may fetch it (the checkout shows pictures); it is the cleaned WebP, not the upload.
    response = as_user(None).get(f"/media/{sha256.group(1)}.webp")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/webp"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.data[:4] == b"RIFF" and b"SpyCam" not in response.data
    assert as_user(None).get(f"/media/{sha256.group(1)}.png").status_code == 404


def test_the_terminal_grid_groups_and_filters_by_category_without_scripts(
    as_user: Client,
) -> None:
    owner = as_user("owner")
    for name, category in [("Latte", "Coffee"), ("Croissant", "Bakery"), ("Gift", "")]:
        assert _add_product(owner, name, category, png_bytes())[0] == 302
    grid = as_user("cashier").get("/terminal/cart").get_data(as_text=True)
    headings = re.findall(r"<h2>([^<]+)</h2>", grid)
    assert headings[:3] == ["Bakery", "Coffee", "Other"]
    assert grid.count('class="product-tile"') == 3 and MEDIA_URL.search(grid)
    only = as_user("cashier").get("/terminal/cart?category=Coffee").get_data(as_text=True)
    assert "Latte" in only and "Croissant" not in only
    assert 'href="/terminal/cart?category=Bakery"' in only  # the chips are plain links
    nothing = as_user("cashier").get("/terminal/cart?category=Nope").get_data(as_text=True)
    assert 'id="no-such-category"' in nothing


def test_an_upload_that_is_not_an_accepted_image_stores_nothing(
    as_user: Client, runtime: Runtime
) -> None:
    owner = as_user("owner")
    before = _blob_count(runtime)
    status, page = _add_product(owner, "Fake", "", b"<svg onload=alert(1)>")
    assert status == 400 and "not a JPEG, PNG or WebP image" in page
    status, page = _add_product(owner, "Huge", "", b"\xff\xd8" + b"\x00" * (5 * 1024 * 1024))
    assert status == 400 and "larger than 5 MB" in page
    # Far over the limit: refused before the body is read, still no 5xx.
    status, _page = _add_product(owner, "Huger", "", b"\x00" * (7 * 1024 * 1024))
    assert status == 413
    assert _blob_count(runtime) == before
    with runtime.session_factory() as session:
        assert session.scalar(select(CatalogItem).where(CatalogItem.name == "Fake")) is None


def test_an_owner_cannot_change_another_shops_product_or_see_its_logo(
    as_user: Client, runtime: Runtime, world: dict[str, int]
) -> None:
    with runtime.session_factory.begin() as session:
        their_logo = branding.set_logo(session, world["other"], png_bytes((1, 2, 3))).sha256
    other = as_user("other_owner")
    assert _add_product(other, "Their tea", "Tea", None)[0] == 302
    with runtime.session_factory() as session:
        item = session.scalars(select(CatalogItem).where(CatalogItem.name == "Their tea")).one()
    owner = as_user("owner")
    token = csrf_from(owner, "/merchant/products")
    upload = (io.BytesIO(png_bytes()), "x.png")
    response = owner.post(
        f"/merchant/products/{item.id}/edit",
        data={"csrf_token": token, "category": "Mine now", "image": upload},
        content_type="multipart/form-data",
    )
    assert response.status_code == 404
    with runtime.session_factory() as session:
        unchanged = session.get_one(CatalogItem, item.id)
        assert unchanged.category == "Tea" and unchanged.image_sha256 is None
    assert "Their tea" not in owner.get("/merchant/products").get_data(as_text=True)
    assert "Their tea" not in as_user("cashier").get("/terminal/cart").get_data(as_text=True)
    assert their_logo not in owner.get("/merchant/branding").get_data(as_text=True)
    # Our branding form changes our row only.
    token = csrf_from(owner, "/merchant/branding")
    owner.post("/merchant/branding", data={"csrf_token": token, "accent_colour": "#1d4ed8"})
    with runtime.session_factory() as session:
        assert branding.get_branding(session, world["other"]).accent_colour is None
        assert branding.get_branding(session, world["other"]).logo_sha256 == their_logo


def test_a_too_light_accent_is_refused_with_a_readable_suggestion(
    as_user: Client, runtime: Runtime, world: dict[str, int]
) -> None:
    owner = as_user("owner")
    token = csrf_from(owner, "/merchant/branding")
    response = owner.post(
        "/merchant/branding", data={"csrf_token": token, "accent_colour": "#FFD700"}
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "#ffd700 is too light" in page and branding.darker_passing("#ffd700") in page
    with runtime.session_factory() as session:
        assert branding.get_branding(session, world["shop"]) == branding.NO_BRANDING
    owner.set_cookie("lang", "ru")
    ru = owner.post("/merchant/branding", data={"csrf_token": token, "accent_colour": "#ffd700"})
    assert "слишком светлый" in ru.get_data(as_text=True)


def test_the_checkout_and_receipt_wear_the_shops_logo_colour_and_language(
    as_user: Client, make_invoice: Callable[..., str], world: dict[str, int]
) -> None:
    owner = as_user("owner")
    token = csrf_from(owner, "/merchant/branding")
    logo = (io.BytesIO(png_bytes((0, 90, 200))), "logo.png")
    response = owner.post(
        "/merchant/branding/logo",
        data={"csrf_token": token, "logo": logo},
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    response = owner.post(
        "/merchant/branding",
        data={"csrf_token": token, "accent_colour": "#1D4ED8", "store_language": "kk"},
    )
    assert response.status_code == 302
    invoice_id = make_invoice(world["shop"])
    shopper = as_user(None)
    for path in (f"/i/{invoice_id}", f"/i/{invoice_id}/receipt"):
        page = shopper.get(path, headers={"Accept-Language": "ru"}).get_data(as_text=True)
        assert '<html lang="kk">' in page, path  # the store's language beats the browser's
        assert 'href="/media/accent/1d4ed8.css"' in page and 'class="brand-logo"' in page
        assert MEDIA_URL.search(page)
        shopper.set_cookie("lang", "en")
        assert '<html lang="en">' in shopper.get(path).get_data(as_text=True)  # the cookie wins
        shopper.delete_cookie("lang")
    css = shopper.get("/media/accent/1d4ed8.css")
    assert css.headers["Content-Type"].startswith("text/css")
    assert "--accent: #1d4ed8" in css.get_data(as_text=True)
    # Another shop's checkout keeps the zone's look and the browser's language.
    theirs = shopper.get(f"/i/{make_invoice(world['other'])}", headers={"Accept-Language": "ru"})
    page = theirs.get_data(as_text=True)
    assert '<html lang="ru">' in page and "/media/accent/" not in page and "brand-logo" not in page


def test_the_choice_page_wears_the_shops_logo_and_colour(
    app: Flask, as_user: Client, runtime: Runtime, world: dict[str, int]
) -> None:
    with runtime.session_factory.begin() as session:
        logo = branding.set_logo(session, world["shop"], png_bytes((0, 90, 200))).sha256
        branding.save_look(session, world["shop"], "#1d4ed8", "")
    with app.test_request_context():
        ours = choice.make_token(world["shop"], 250_000, "", world["cashier"])
        theirs = choice.make_token(world["other"], 250_000, "", world["other_cashier"])
    shopper = as_user(None)
    page = shopper.get(f"/c/{ours}").get_data(as_text=True)
    assert 'value="btc"' in page  # the choice itself, not an error page
    assert 'href="/media/accent/1d4ed8.css"' in page
    assert f'src="/media/{logo}.webp"' in page and 'class="brand-logo"' in page
    # A shop without branding keeps the zone's look.
    plain = shopper.get(f"/c/{theirs}").get_data(as_text=True)
    assert 'value="btc"' in plain
    assert "/media/accent/" not in plain and "brand-logo" not in plain and logo not in plain
