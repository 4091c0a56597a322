"""A merchant's bank account: Kazakhstan IBAN (ISO 13616 check digits), BIC (ISO 9362), holder.

The valid IBANs here get their check digits from the ISO algorithm written out again in the test
(one big `int(...) % 97`), not from the code under test.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from pos import accounts
from pos.bank_details import (
    field_errors,
    format_iban,
    iban_mod97,
    mask_iban,
    parse_bank_details,
    parse_bic,
    parse_holder,
    parse_kz_iban,
)
from pos.errors import ValidationError
from pos.models import AuditLog
from pos.settings import Settings

import factories


def iban_for(country: str, bban: str) -> str:
    """ISO 13616: check digits = 98 - (BBAN + country + "00", letters as 10..35) mod 97."""
    digits = "".join(str(int(char, 36)) for char in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


# Real-shaped: 3-digit bank code, then 13 letters or digits (currency code KZT inside is common).
HALYK = iban_for("KZ", "601A861000123456")
KASPI = iban_for("KZ", "722S000012345678")
CENTERCREDIT = iban_for("KZ", "8269KZT000123456")
GERMAN = iban_for("DE", "370400440532013000")


def test_the_independent_check_digits_match_a_published_example() -> None:
    # The IBAN registry's example for Kazakhstan.
    assert iban_for("KZ", "125KZT5004100100") == "KZ86125KZT5004100100"
    assert parse_kz_iban("KZ86125KZT5004100100") == "KZ86125KZT5004100100"


@pytest.mark.parametrize("iban", [HALYK, KASPI, CENTERCREDIT])
def test_valid_kz_ibans_are_accepted(iban: str) -> None:
    assert len(iban) == 20
    assert parse_kz_iban(iban) == iban
    assert iban_mod97(iban) == 1 == int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97


def test_spaces_and_lower_case_are_normalised() -> None:
    typed = "  " + format_iban(KASPI).lower() + "\t"
    assert " " in typed
    assert parse_kz_iban(typed) == KASPI


def _iban_error(text: str) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_kz_iban(text)
    assert caught.value.field == "bank_iban"
    return str(caught.value)


def test_each_malformed_iban_gets_its_own_message() -> None:
    assert "enter the account's IBAN" in _iban_error("   ")
    assert "only letters and digits" in _iban_error(HALYK[:10] + "-" + HALYK[10:])
    assert "starts with KZ" in _iban_error(GERMAN)
    assert "this one has 19" in _iban_error(HALYK[:-1])
    assert "this one has 21" in _iban_error(HALYK + "0")
    assert "check digits (3rd and 4th" in _iban_error("KZAB" + HALYK[4:])
    # The bank code is three digits.
    bad_bank = iban_for("KZ", "6O1A861000123456")  # a letter O, check digits right
    assert "3-digit bank code" in _iban_error(bad_bank)


def test_a_typo_or_a_swap_fails_the_check_digits() -> None:
    typo = HALYK[:-1] + ("7" if HALYK[-1] != "7" else "8")
    assert "check digits do not match" in _iban_error(typo)
    swapped = HALYK[:14] + HALYK[15] + HALYK[14] + HALYK[16:]  # "12" -> "21"
    assert swapped != HALYK
    assert "check digits do not match" in _iban_error(swapped)
    wrong_check = HALYK[:2] + f"{(int(HALYK[2:4]) + 1) % 100:02d}" + HALYK[4:]
    assert "check digits do not match" in _iban_error(wrong_check)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("HSBKKZKX", "HSBKKZKX"),  # Halyk Bank
        ("caspkzka", "CASPKZKA"),  # Kaspi Bank, typed lower-case
        ("KCJB KZ KX XXX", "KCJBKZKXXXX"),  # 11 characters with a branch
        ("DEUTDEFF500", "DEUTDEFF500"),  # valid when no KZ IBAN is compared
    ],
)
def test_valid_bics(text: str, expected: str) -> None:
    assert parse_bic(text) == expected


def _bic_error(text: str, iban: str | None = None) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_bic(text, iban)
    assert caught.value.field == "bank_bic"
    return str(caught.value)


def test_each_malformed_bic_gets_its_own_message() -> None:
    assert "enter the bank's BIC" in _bic_error("")
    assert "8 or 11 characters; this one has 9" in _bic_error("HSBKKZKXX")
    assert "8 or 11 characters; this one has 7" in _bic_error("HSBKKZK")
    assert "4 letters (bank)" in _bic_error("HSB1KZKX")  # a digit in the bank code
    assert "4 letters (bank)" in _bic_error("HSBK1ZKX")  # a digit in the country
    assert "4 letters (bank)" in _bic_error("HSBKKZK-")
    assert "4 letters (bank)" in _bic_error("HSBKKZKX-01")


def test_a_kz_iban_needs_a_bank_in_kazakhstan() -> None:
    assert "country is DE, but the IBAN is a Kazakhstan account" in _bic_error("DEUTDEFF", HALYK)
    assert parse_bic("HSBKKZKX", HALYK) == "HSBKKZKX"


def _holder_error(text: str) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_holder(text)
    assert caught.value.field == "bank_holder"
    return str(caught.value)


def test_holder_names() -> None:
    assert parse_holder("  ИП   «Кофейня  Алматы» ") == "ИП «Кофейня Алматы»"
    assert parse_holder("IP Ab") == "IP Ab"
    assert len(parse_holder("A" * 120)) == 120
    assert "2 to 120 characters" in _holder_error("A")
    assert "2 to 120 characters" in _holder_error("   ")
    assert "2 to 120 characters" in _holder_error("A" * 121)
    assert "cannot be printed" in _holder_error("Shop\x07Bell")
    assert "cannot start with" in _holder_error('=HYPERLINK("http://x")')


def test_all_three_together_and_every_error_at_once() -> None:
    details = parse_bank_details(" Coffee LLP ", format_iban(HALYK), "hsbkkzkx")
    assert (details.holder, details.iban, details.bic) == ("Coffee LLP", HALYK, "HSBKKZKX")
    assert field_errors("Coffee LLP", HALYK, "HSBKKZKX") == {}
    errors = field_errors("x", HALYK[:-1], "HSB")
    assert set(errors) == {"bank_holder", "bank_iban", "bank_bic"}
    assert "this one has 19" in errors["bank_iban"]
    # With the IBAN valid, a foreign BIC is named as such.
    assert set(field_errors("Coffee LLP", HALYK, "DEUTDEFF")) == {"bank_bic"}
    with pytest.raises(ValidationError) as caught:
        parse_bank_details("Coffee LLP", GERMAN, "DEUTDEFF")
    assert caught.value.field == "bank_iban"


def test_masking_and_grouping() -> None:
    assert mask_iban(HALYK) == "*" * 16 + HALYK[-4:]
    assert format_iban("KZ86125KZT5004100100") == "KZ86 125K ZT50 0410 0100"


def test_set_bank_details_stores_and_audits_the_iban_masked(
    session: Session, settings: Settings
) -> None:
    merchant = factories.merchant(session, settings, "Bank Shop", "bank")
    with pytest.raises(ValidationError) as caught:
        accounts.set_bank_details(session, merchant, "Bank Shop LLP", HALYK[:-1], "HSBKKZKX")
    assert caught.value.field == "bank_iban"
    assert merchant.bank_iban is None and merchant.bank_holder is None

    assert accounts.set_bank_details(
        session, merchant, " Bank Shop LLP ", format_iban(HALYK), "hsbkkzkx", actor_user_id=None
    )
    session.commit()
    session.expire_all()
    assert (merchant.bank_holder, merchant.bank_iban, merchant.bank_bic) == (
        "Bank Shop LLP",
        HALYK,
        "HSBKKZKX",
    )
    # The same again changes nothing and writes no second audit row.
    assert not accounts.set_bank_details(session, merchant, "Bank Shop LLP", HALYK, "HSBKKZKX")
    assert accounts.set_bank_details(session, merchant, "Bank Shop LLP", KASPI, "CASPKZKA")
    session.commit()
    rows = session.scalars(
        select(AuditLog).where(AuditLog.action == "merchant.bank_details").order_by(AuditLog.id)
    ).all()
    assert [r.detail for r in rows] == [
        {
            "holder": "Bank Shop LLP",
            "iban": "*" * 16 + HALYK[-4:],
            "bic": "HSBKKZKX",
            "previous_iban": None,
        },
        {
            "holder": "Bank Shop LLP",
            "iban": "*" * 16 + KASPI[-4:],
            "bic": "CASPKZKA",
            "previous_iban": "*" * 16 + HALYK[-4:],
        },
    ]
    assert all(HALYK not in str(r.detail) and KASPI not in str(r.detail) for r in rows)
