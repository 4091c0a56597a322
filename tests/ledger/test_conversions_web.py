"""The operator's Conversions and Balances pages through Flask's test client (DESIGN §7).

The world: two `tenge` shops paid 1 000 and 2 500 KZT in KZTE and booked, so
zone:clearing:kzte holds 350 000 tiyn and 3 500 000 000 base units (KZTE has 6 decimals here).
"""

import argparse
import csv
import io
import json
from decimal import ROUND_HALF_UP, Decimal

import pytest
from flask import Flask
from flask.testing import FlaskClient
from ledger_support import MakeInvoice, book_all, ledger_size, pay
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from merchant_portal.local_time import localtime
from pos.models import AuditLog, Role
from pos.runtime import Runtime
from pos.states import PaymentMethod
from settlement.ledger import cli, conversions
from settlement.ledger.models import Conversion

import factories
from portal_helpers import csrf_from, login

KZTE = 1_000_000  # base units per KZTE
HEADER = "method,amount_atomic,proceeds_tiyn,reference\n"


@pytest.fixture
def world(runtime: Runtime, session: Session, make_invoice: MakeInvoice) -> dict[str, int]:
    shop = factories.merchant(session, runtime.settings, "Shop A", "a")
    other = factories.merchant(session, runtime.settings, "Shop B", "b")
    factories.user(session, "owner@a.test", Role.OWNER, shop.id)
    factories.user(session, "ops@zone.test", Role.OPERATOR)
    session.commit()
    for merchant, price in ((shop, 100_000), (other, 250_000)):
        invoice = make_invoice(price, merchant=merchant)
        pay(session, invoice, invoice.amount_due_atomic)
    book_all(session, runtime.settings)
    return {"shop": shop.id, "other": other.id}


@pytest.fixture
def ops(app: Flask, world: dict[str, int]) -> FlaskClient:
    client = app.test_client()
    login(client, "ops@zone.test", factories.PASSWORD)
    return client


def _token(client: FlaskClient) -> str:
    return csrf_from(client, "/reports/conversions")


def _balances(client: FlaskClient) -> dict[str, dict[str, str]]:
    response = client.get("/reports/balances.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    return {r["code"]: r for r in csv.DictReader(io.StringIO(response.get_data(as_text=True)))}


def _count(session: Session) -> int:
    session.commit()  # a fresh snapshot: the request wrote in its own session
    return session.scalar(select(func.count()).select_from(Conversion)) or 0


def _upload(
    client: FlaskClient, token: str, text: str | bytes, name: str = "c.csv"
) -> TestResponse:
    """POST a file as a browser does. The multipart body is built here, in memory: the test
    client would spool a large one to a temporary file that it never closes."""
    content = text.encode() if isinstance(text, str) else text
    boundary = "cc-test-boundary-7f3a"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return client.post(
        "/reports/conversions/import",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )


def test_record_at_a_gain_moves_the_balances(ops: FlaskClient, session: Session) -> None:
    before = _balances(ops)
    assert before["zone:clearing:kzte"]["balance_tiyn"] == "350000"
    assert before["zone:clearing:kzte"]["balance_atomic"] == str(3500 * KZTE)
    assert before["zone:bank"]["balance_tiyn"] == "0"
    page = ops.get("/reports/conversions").get_data(as_text=True)
    assert "3,500.00" in page and "1.00 ₸ per KZTE" in page  # clearing and its rate
    assert "method,amount_atomic,proceeds_tiyn,reference\nbtc,5382,250110,EXMO" in page

    response = ops.post(
        "/reports/conversions",
        data={
            "csrf_token": _token(ops),
            "method": "kzte",
            "amount_atomic": str(1000 * KZTE),
            "proceeds": "1001.50",
            "reference": "BANK-0001",
        },
    )
    assert response.status_code == 303 and response.location.endswith("/reports/conversions")
    page = ops.get("/reports/conversions").get_data(as_text=True)
    assert "book value 1,000.00 ₸, FX result 1.50 ₸" in page  # the flash message
    conversion = session.scalars(select(Conversion)).one()
    assert (conversion.book_value_tiyn, conversion.proceeds_tiyn) == (100_000, 100_150)
    assert localtime(conversion.created_at) in page and "BANK-0001" in page

    after = _balances(ops)
    assert after["zone:clearing:kzte"]["balance_tiyn"] == "250000"
    assert after["zone:clearing:kzte"]["balance_atomic"] == str(2500 * KZTE)
    assert after["zone:bank"]["balance_tiyn"] == "100150"
    assert after["zone:fx_result"]["balance_tiyn"] == "150"
    sheet = ops.get("/reports/balances").get_data(as_text=True)
    assert "1,001.50" in sheet and "Debits equal credits: yes" in sheet
    audit = session.scalars(select(AuditLog).where(AuditLog.action == "conversion.recorded")).one()
    assert audit.actor_user_id is not None

    # The same form again (a double submit): recorded once.
    again = ops.post(
        "/reports/conversions",
        data={
            "csrf_token": _token(ops),
            "method": "kzte",
            "amount_atomic": str(1000 * KZTE),
            "proceeds": "1001.50",
            "reference": "BANK-0001",
        },
        follow_redirects=True,
    )
    assert "was already recorded" in again.get_data(as_text=True)
    assert _count(session) == 1


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"amount_atomic": str(3501 * KZTE), "proceeds": "3501"}, 422, "holds 3500000000"),
        ({"amount_atomic": "12abc", "proceeds": "10"}, 400, "is not a whole number"),
        ({"amount_atomic": "0", "proceeds": "10"}, 422, "more than zero"),
        ({"amount_atomic": "10", "proceeds": "1.234"}, 400, "is not an amount in tenge"),
        ({"amount_atomic": "10", "proceeds": "1", "reference": " "}, 400, "reference is required"),
        ({"method": "eth", "amount_atomic": "10", "proceeds": "1"}, 400, "choose the method"),
    ],
)
def test_a_refused_conversion_records_nothing(
    ops: FlaskClient,
    session: Session,
    fields: dict[str, str],
    status: int,
    message: str,
) -> None:
    size = ledger_size(session)
    data = {"csrf_token": _token(ops), "method": "kzte", "reference": "R-1", **fields}
    response = ops.post("/reports/conversions", data=data)
    assert response.status_code == status
    html = response.get_data(as_text=True)
    assert message in html and 'class="error-message"' in html
    assert f'value="{fields["amount_atomic"]}"' in html  # the form keeps what was typed
    assert _count(session) == 0 and ledger_size(session) == size
    assert _balances(ops)["zone:bank"]["balance_tiyn"] == "0"


def test_no_csrf_token_no_conversion(ops: FlaskClient, session: Session) -> None:
    data = {"method": "kzte", "amount_atomic": "10", "proceeds": "1", "reference": "R"}
    assert ops.post("/reports/conversions", data=data).status_code == 400
    assert _upload(ops, "", HEADER + "kzte,10,1,R\n").status_code == 400
    assert _count(session) == 0


def test_csv_import_twice_records_once(ops: FlaskClient, session: Session) -> None:
    text = HEADER + f"kzte,{500 * KZTE},49900,EX-1\nkzte,{1000 * KZTE},100000,EX-2\n"
    token = _token(ops)
    first = _upload(ops, token, "\ufeff" + text)  # a spreadsheet's BOM is fine
    assert first.status_code == 303
    assert "2 conversions recorded from c.csv; 0 of its 2 lines" in ops.get(
        "/reports/conversions"
    ).get_data(as_text=True)
    assert _count(session) == 2
    size = ledger_size(session)

    second = _upload(ops, token, text)
    assert second.status_code == 303
    assert "0 conversions recorded from c.csv; 2 of its 2 lines were recorded before" in (
        ops.get("/reports/conversions").get_data(as_text=True)
    )
    assert _count(session) == 2 and ledger_size(session) == size
    balances = _balances(ops)
    assert balances["zone:clearing:kzte"]["balance_tiyn"] == "200000"  # 3 500 - 500 - 1 000 KZT
    assert balances["zone:bank"]["balance_tiyn"] == "149900"
    assert balances["zone:fx_result"]["balance_tiyn"] == "-100"  # a 1 KZT loss on EX-1

    # EX-2 again with other numbers, after a good new line: the whole file is refused.
    clash = HEADER + f"kzte,{10 * KZTE},1000,EX-3\nkzte,{1000 * KZTE},100001,EX-2\n"
    response = _upload(ops, token, clash)
    assert response.status_code == 422
    assert "already recorded with other numbers" in response.get_data(as_text=True)
    assert _count(session) == 2 and ledger_size(session) == size


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("kzte,abc,100,EX-9", "line 3: method must be btc or kzte"),
        ("kzte,100,100,", "line 3: a reference is required"),
        (f"kzte,{3001 * KZTE},300100,EX-9", "holds 3000000000"),  # over what line 2 left
    ],
)
def test_a_bad_line_rejects_the_whole_file(
    ops: FlaskClient, session: Session, bad_line: str, message: str
) -> None:
    size = ledger_size(session)
    text = HEADER + f"kzte,{500 * KZTE},50000,EX-8\n{bad_line}\n"
    response = _upload(ops, _token(ops), text)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert _count(session) == 0 and ledger_size(session) == size
    assert _balances(ops)["zone:clearing:kzte"]["balance_tiyn"] == "350000"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("amount,method\n1,btc\n", 422, "the CSV header must be"),
        (b"\xff\xfe\x00bad", 400, "not UTF-8 text"),
        ("", 400, "choose a CSV file"),  # no file chosen: an empty name
    ],
)
def test_a_bad_file_is_a_message(
    ops: FlaskClient, session: Session, body: str | bytes, status: int, message: str
) -> None:
    response = _upload(ops, _token(ops), body, name="" if body == "" else "c.csv")
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert _count(session) == 0


def test_a_file_over_the_limit_is_refused_with_a_message(
    ops: FlaskClient, session: Session
) -> None:
    line = f"kzte,{KZTE},100,EX-{'x' * 60}\n"
    text = HEADER + line * (1024 * 1024 // len(line) + 1)
    response = _upload(ops, _token(ops), text)
    assert response.status_code == 413
    html = response.get_data(as_text=True)
    assert "the file is larger than 1 MB; nothing was recorded" in html
    assert "Record a conversion" in html  # the page itself, not a bare error
    assert _count(session) == 0


def test_owner_never_sees_the_pages(app: Flask, world: dict[str, int], session: Session) -> None:
    anonymous = app.test_client()
    for path in ("/reports/conversions", "/reports/balances", "/reports/balances.csv"):
        assert anonymous.get(path).status_code == 302
    owner = app.test_client()
    login(owner, "owner@a.test", factories.PASSWORD)
    for path in (
        "/reports/conversions",
        "/reports/conversions.csv",
        "/reports/balances",
        "/reports/balances.csv",
    ):
        response = owner.get(path)
        assert response.status_code == 403, path
        assert "zone:clearing" not in response.get_data(as_text=True)
    token = csrf_from(owner, f"/reports/merchants/{world['shop']}/statement")  # the logout form's
    data = {"csrf_token": token, "method": "kzte", "amount_atomic": "10", "proceeds": "1"}
    assert owner.post("/reports/conversions", data={**data, "reference": "O-1"}).status_code == 403
    assert _upload(owner, token, HEADER + "kzte,10,1,O-2\n").status_code == 403
    big = _upload(owner, token, "x" * (1024 * 1024 + 1))
    assert big.status_code == 413
    assert "Record a conversion" not in big.get_data(as_text=True)
    statement = owner.get(f"/reports/merchants/{world['shop']}/statement")
    assert "/reports/conversions" not in statement.get_data(as_text=True)  # no nav link
    assert _count(session) == 0


def test_csv_downloads_match_the_cli(
    ops: FlaskClient, session: Session, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    token = _token(ops)
    text = HEADER + f"kzte,{700 * KZTE},70070,EX-1\nkzte,{300 * KZTE},29900,EX-2\n"
    assert _upload(ops, token, text).status_code == 303

    body = ops.get("/reports/conversions.csv")
    assert body.headers["Content-Disposition"] == 'attachment; filename="conversions.csv"'
    rows = list(csv.DictReader(io.StringIO(body.get_data(as_text=True))))
    expected = [conversions.as_dict(c) for c in conversions.list_conversions(session)]
    assert [list(r) for r in rows] == [list(e) for e in expected]  # same columns, same order
    assert rows == [{k: "" if v is None else str(v) for k, v in e.items()} for e in expected]
    assert [(r["reference"], r["fx_result_tiyn"]) for r in rows] == [
        ("EX-2", "-100"),
        ("EX-1", "70"),
    ]

    exit_code = cli.cmd_report_balances(
        argparse.Namespace(json=True, merchant=None), runtime.settings
    )
    assert exit_code == 0
    printed = json.loads(capsys.readouterr().out)
    downloaded = list(
        csv.DictReader(io.StringIO(ops.get("/reports/balances.csv").get_data(as_text=True)))
    )
    assert list(downloaded[0]) == [
        "code",
        "type",
        "merchant_id",
        "memorandum",
        "balance_tiyn",
        "balance_atomic",
    ]
    assert len(downloaded) == len(printed["accounts"]) and printed["balanced"] is True

    def as_csv(value: object) -> str:
        return "" if value is None else json.dumps(value) if isinstance(value, bool) else str(value)

    for row, account in zip(downloaded, printed["accounts"], strict=True):
        assert row == {k: as_csv(account.get(k)) for k in row}
    assert downloaded[0]["code"].startswith("zone:")


def test_balances_page_groups_zone_then_merchants(ops: FlaskClient, world: dict[str, int]) -> None:
    html = ops.get("/reports/balances").get_data(as_text=True)
    zone_at = html.index(">Zone<")
    shop_at, other_at = html.index("Shop A"), html.index("Shop B")
    assert zone_at < shop_at < other_at  # zone first, then merchants in id order
    assert f"merchant:{world['shop']}:payable" in html
    assert "990.00" in html and "2,475.00" in html  # each shop's payable, net of 1 %
    assert "Debits equal credits: yes" in html


def test_weighted_average_rate_of_btc(
    ops: FlaskClient, session: Session, runtime: Runtime, make_invoice: MakeInvoice
) -> None:
    invoice = make_invoice(price_tiyn=250_000, method=PaymentMethod.BTC)
    pay(session, invoice, invoice.amount_due_atomic)
    book_all(session, runtime.settings)
    tiyn, sat = conversions.clearing_balance(session, PaymentMethod.BTC)
    assert sat == invoice.amount_due_atomic and tiyn > 0
    rate = (Decimal(tiyn) * 100_000_000 / sat).quantize(Decimal(1), ROUND_HALF_UP)
    page = ops.get("/reports/conversions").get_data(as_text=True)
    whole, tiyn_part = divmod(int(rate), 100)  # the English page groups with commas
    assert f"{whole:,}.{tiyn_part:02d} ₸ per BTC" in page
