"""Bank details on the owner's profile page; settlement mode and hold in the operator's registry.

Through Flask's test client, CSRF tokens read from the pages as a browser does.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import select

from pos.models import AuditLog, Invoice, Merchant, SettlementMode, User
from pos.runtime import Runtime

from portal_helpers import csrf_from

Client = Callable[[str | None], FlaskClient]


def kz_iban(bban: str) -> str:
    """ISO 13616 check digits, written out here rather than taken from the code under test."""
    digits = "".join(str(int(char, 36)) for char in bban + "KZ00")
    return f"KZ{98 - int(digits) % 97:02d}{bban}"


IBAN = kz_iban("722S000012345678")  # Kaspi-shaped: bank code 722, 13-character account
TYPED = {  # as an owner types them: grouped, lower-case, padded
    "bank_holder": "  Shop A   LLP ",
    "bank_iban": " " + " ".join(IBAN[i : i + 4] for i in range(0, 20, 4)).lower(),
    "bank_bic": "caspkzka",
}
PROFILE = "/merchant/setup/profile"


def _merchant(runtime: Runtime, merchant_id: int) -> Merchant:
    with runtime.session_factory() as session:
        merchant = session.get(Merchant, merchant_id)
        assert merchant is not None
        return merchant


def _bank(runtime: Runtime, merchant_id: int) -> tuple[str | None, str | None, str | None]:
    m = _merchant(runtime, merchant_id)
    return m.bank_holder, m.bank_iban, m.bank_bic


def _audits(runtime: Runtime, action: str) -> list[AuditLog]:
    with runtime.session_factory() as session:
        query = select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)
        return list(session.scalars(query))


def _save_bank(client: FlaskClient, data: dict[str, str]) -> tuple[int, str]:
    token = csrf_from(client, PROFILE)
    response = client.post("/merchant/bank", data={"csrf_token": token, **data})
    return response.status_code, response.headers.get("Location") or response.get_data(True)


def test_the_owner_saves_the_bank_account(
    as_user: Client, runtime: Runtime, world: dict[str, int]
) -> None:
    owner = as_user("owner")
    page = owner.get(PROFILE).get_data(as_text=True)
    assert 'id="bank-form"' in page and "Bank account for payouts" in page
    assert 'name="bank_iban" value=""' in page

    status, location = _save_bank(owner, TYPED)
    assert status == 302 and location == PROFILE
    assert _bank(runtime, world["shop"]) == ("Shop A LLP", IBAN, "CASPKZKA")
    [row] = _audits(runtime, "merchant.bank_details")
    assert row.actor_user_id == world["owner"] and row.merchant_id == world["shop"]
    assert row.detail["iban"] == "*" * 16 + IBAN[-4:] and IBAN not in str(row.detail)

    page = owner.get(PROFILE).get_data(as_text=True)
    grouped = " ".join(IBAN[i : i + 4] for i in range(0, 20, 4))
    assert f'name="bank_iban" value="{grouped}"' in page
    assert "Bank account for payouts saved." in page
    assert IBAN in owner.get("/merchant/").get_data(as_text=True)


def test_a_bad_iban_shows_its_message_and_stores_nothing(
    as_user: Client, runtime: Runtime, world: dict[str, int]
) -> None:
    owner = as_user("owner")
    typo = IBAN[:-1] + ("1" if IBAN[-1] != "1" else "2")
    status, page = _save_bank(owner, {**TYPED, "bank_iban": typo})
    assert status == 400
    error = re.search(r'id="bank_iban-error">([^<]+)<', page)
    assert error is not None and "check digits do not match" in error.group(1)
    assert f'value="{typo}"' in page  # what was typed comes back to be corrected
    assert 'id="bank_holder-error"' not in page and 'id="bank_bic-error"' not in page

    # Every field wrong at once: each message beside its own field, still no 500.
    status, page = _save_bank(
        owner, {"bank_holder": "x", "bank_iban": "DE89 3704 0044 0532 0130 00", "bank_bic": "HSB"}
    )
    assert status == 400
    assert 'id="bank_holder-error"' in page and "2 to 120 characters" in page
    assert 'id="bank_iban-error"' in page and "starts with KZ" in page
    assert 'id="bank_bic-error"' in page and "8 or 11 characters" in page
    status, page = _save_bank(owner, {**TYPED, "bank_bic": "DEUTDEFF"})
    assert status == 400 and "the IBAN is a Kazakhstan account" in page

    # Without the CSRF token nothing is accepted either.
    assert owner.post("/merchant/bank", data=TYPED).status_code == 400
    assert _bank(runtime, world["shop"]) == (None, None, None)
    assert _audits(runtime, "merchant.bank_details") == []


def test_only_the_shops_own_owner_changes_its_account(
    as_user: Client, runtime: Runtime, world: dict[str, int]
) -> None:
    cashier = as_user("cashier")
    assert cashier.get(PROFILE).status_code == 403
    token = csrf_from(cashier, "/terminal/")
    assert cashier.post("/merchant/bank", data={"csrf_token": token, **TYPED}).status_code == 403
    anonymous = as_user(None)
    token = csrf_from(anonymous, "/login")
    response = anonymous.post("/merchant/bank", data={"csrf_token": token, **TYPED})
    assert response.status_code == 302 and "/login" in response.headers["Location"]

    # Another shop's owner only ever reaches their own shop: the URL names no merchant.
    other = as_user("other_owner")
    status, _ = _save_bank(other, {**TYPED, "bank_holder": "Shop B LLP"})
    assert status == 302
    assert _bank(runtime, world["shop"]) == (None, None, None)
    assert _bank(runtime, world["other"]) == ("Shop B LLP", IBAN, "CASPKZKA")


def _operator_post(operator: FlaskClient, path: str, data: dict[str, str]) -> tuple[int, str]:
    token = csrf_from(operator, "/operator/merchants")
    response = operator.post(path, data={"csrf_token": token, **data})
    return response.status_code, response.headers.get("Location") or response.get_data(True)


def _merchant_of(runtime: Runtime, owner_email: str) -> Merchant:
    with runtime.session_factory() as session:
        owner = session.scalar(select(User).where(User.email == owner_email))
        assert owner is not None and owner.merchant_id is not None
        merchant = session.get(Merchant, owner.merchant_id)
        assert merchant is not None
        return merchant


def test_the_operator_registers_a_direct_merchant(as_user: Client, runtime: Runtime) -> None:
    operator = as_user("operator")
    form = operator.get("/operator/merchants").get_data(as_text=True)
    assert re.search(r'<option value="tenge" selected>', form)
    status, page = _operator_post(
        operator,
        "/operator/merchants",
        {"name": "Bakery", "owner_email": "bake@zone.kz", "settlement_mode": "barter"},
    )
    assert status == 400 and 'id="settlement_mode-error"' in page and "tenge or direct" in page
    status, _ = _operator_post(
        operator,
        "/operator/merchants",
        {"name": "Bakery", "owner_email": "bake@zone.kz", "settlement_mode": "direct"},
    )
    assert status == 200
    assert _merchant_of(runtime, "bake@zone.kz").settlement_mode is SettlementMode.DIRECT
    status, _ = _operator_post(
        operator, "/operator/merchants", {"name": "Florist", "owner_email": "flor@zone.kz"}
    )
    assert status == 200  # no choice sent: the pilot's default
    assert _merchant_of(runtime, "flor@zone.kz").settlement_mode is SettlementMode.TENGE


def test_the_registry_shows_mode_hold_and_missing_bank_details(
    as_user: Client, runtime: Runtime, world: dict[str, int]
) -> None:
    operator = as_user("operator")
    page = operator.get("/operator/merchants").get_data(as_text=True)
    shop = world["shop"]
    cell = re.search(rf'id="settlement-{shop}">(.*?)</td>', page, re.S)
    assert cell is not None and "tenge" in cell.group(1) and "hold 24 h" in cell.group(1)
    assert "applies to invoices created from now on" in cell.group(1)
    bank = re.search(rf'id="bank-{shop}">(.*?)</td>', page, re.S)
    assert bank is not None and "missing: payouts cannot be paid" in bank.group(1)

    assert _save_bank(as_user("owner"), TYPED)[0] == 302
    page = operator.get("/operator/merchants").get_data(as_text=True)
    bank = re.search(rf'id="bank-{shop}">(.*?)</td>', page, re.S)
    assert bank is not None and "missing" not in bank.group(1) and "yes" in bank.group(1)


def test_the_operator_changes_mode_and_hold_for_invoices_made_afterwards(
    as_user: Client,
    runtime: Runtime,
    world: dict[str, int],
    make_invoice: Callable[..., str],
) -> None:
    shop = world["shop"]
    before = make_invoice(shop)
    operator = as_user("operator")
    path = f"/operator/merchants/{shop}/settlement"

    status, page = _operator_post(
        operator, path, {"settlement_mode": "direct", "payout_hold_hours": "999"}
    )
    assert status == 400 and f'id="payout_hold_hours-error-{shop}"' in page
    status, page = _operator_post(
        operator, path, {"settlement_mode": "x", "payout_hold_hours": "1"}
    )
    assert status == 400 and f'id="settlement_mode-error-{shop}"' in page
    assert operator.post(path, data={"settlement_mode": "direct"}).status_code == 400  # no CSRF
    merchant = _merchant(runtime, shop)
    assert (merchant.settlement_mode, merchant.payout_hold_hours) == (SettlementMode.TENGE, 24)

    status, location = _operator_post(
        operator, path, {"settlement_mode": "direct", "payout_hold_hours": "48"}
    )
    assert status == 302 and location == "/operator/merchants"
    merchant = _merchant(runtime, shop)
    assert (merchant.settlement_mode, merchant.payout_hold_hours) == (SettlementMode.DIRECT, 48)
    [mode_row] = _audits(runtime, "merchant.settlement_mode")
    [hold_row] = _audits(runtime, "merchant.payout_hold")
    assert mode_row.actor_user_id == hold_row.actor_user_id == world["operator"]
    assert mode_row.detail == {"from": "tenge", "to": "direct"}
    assert hold_row.detail == {"from": 24, "to": 48}
    page = operator.get("/operator/merchants").get_data(as_text=True)
    assert "applies to invoices created from now on" in page

    after = make_invoice(shop)
    with runtime.session_factory() as session:
        modes = {i.id: i.settlement_mode for i in session.scalars(select(Invoice))}
    assert modes == {before: SettlementMode.TENGE, after: SettlementMode.DIRECT}

    # Only the operator; an unknown merchant is 404.
    owner = as_user("owner")
    token = csrf_from(owner, "/merchant/")
    refused = owner.post(path, data={"csrf_token": token, "settlement_mode": "tenge"})
    assert refused.status_code == 403
    missing = _operator_post(
        operator,
        "/operator/merchants/999999/settlement",
        {"settlement_mode": "tenge", "payout_hold_hours": "1"},
    )
    assert missing[0] == 404
