"""Issue #14 acceptance: both settlement modes driven through the CLI and the worker's duties
against the sandbox Bitcoin node.

Merchants, invoices, conversions, payouts and reports go through `cryptocity …` (pos.cli:main
on the test database and Redis); payments are real transactions on the node, and the worker's
duties (watcher, expiry, ledger booking) run in-process between steps. After every step each
account's balance (tiyn, and atomic units for clearing) must equal `Model`, a calculation
written here from the payments on chain and the invoices' locked rates; the ledger must
balance; `report reconcile --json` must show no difference; and a `direct` merchant never has
a payout. The steps: pay exactly, over, twice, after settlement, partial then expired, a double
spend of an unconfirmed second payment, a refund claimed/sent/confirmed, a reorg after
settlement, conversions at a gain and a loss, a payout after the hold.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import pytest
from btc_harness import World, make_world, status_is
from chains import Chain, make_chain
from zone_wallet import SHOPPER, zone_spend

from pos.cli import main
from pos.runtime import Runtime
from pos.states import InvoiceStatus
from settlement.ledger import refunds

pytestmark = [pytest.mark.db, pytest.mark.slow]

FEE_BP = 100


@pytest.fixture
def sandbox_chain(tmp_path: Path) -> Iterator[Chain]:
    made = make_chain("sandbox", tmp_path / "sandbox")
    try:
        yield made
    finally:
        made.close()


@dataclass
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Any]:
    """`cryptocity … --json` as the console script runs it; returns the parsed JSON."""
    s = runtime.settings
    for name, value in {
        "CRYPTOCITY_MODE": "demo",
        "CRYPTOCITY_DATA_DIR": str(s.data_dir),
        "DATABASE_URL": s.database_url,
        "REDIS_URL": s.redis_url or "",
        "KZTE_MINT": s.kzte_mint or "",
        "ZONE_BTC_XPUB": s.zone_btc_xpub or "",
        "ZONE_KZTE_WALLET": s.zone_kzte_wallet or "",
        "BITCOIN_ZMQ_URL": "",
    }.items():
        monkeypatch.setenv(name, value)

    def run(*args: str, ok: bool = True) -> Any:
        capsys.readouterr()
        code = main([*args, "--json"])
        out, err = capsys.readouterr()
        if not ok:
            return Ran(code, out, err)
        assert code == 0, err
        return json.loads(out)

    return run


def value(rate: Decimal, sat: int) -> int:
    return int((Decimal(sat) * rate / Decimal(1_000_000)).to_integral_value(ROUND_FLOOR))


@dataclass
class Inv:
    """What the model knows of one invoice: its terms and the final payments on chain."""

    id: str
    merchant_id: int
    direct: bool
    price: int
    due: int
    rate: Decimal
    final: list[int] = field(default_factory=list)  # satoshi of each final payment
    settled: bool = False
    closed: bool = False  # settled, expired or invalid: what was not allocated is owed back


class Model:
    """Balances from first principles (DESIGN §7), independent of the posting code."""

    def __init__(self) -> None:
        self.invoices: dict[str, Inv] = {}
        self.conversions: list[tuple[int, int, int]] = []  # (sat, proceeds, book value)
        self.payouts: dict[int, int] = defaultdict(int)
        self.refunds: list[tuple[Inv, int, int]] = []  # (invoice, tiyn, sat) confirmed

    def balances(self) -> dict[str, tuple[int, int | None]]:
        tiyn: dict[str, int] = defaultdict(int)
        atomic: dict[str, int] = defaultdict(int)
        for inv in self.invoices.values():
            m = inv.merchant_id
            held = f"merchant:{m}:crypto_received:btc" if inv.direct else "zone:clearing:btc"
            unalloc = f"merchant:{m}:sales_unallocated" if inv.direct else "zone:unallocated"
            values = [value(inv.rate, sat) for sat in inv.final]
            tiyn[held] += sum(values)
            atomic[held] += sum(inv.final)
            tiyn[unalloc] += sum(values)
            allocated = 0
            if inv.settled:
                allocated = min(value(inv.rate, min(sum(inv.final), inv.due)), sum(values))
                owed = min(inv.price, allocated)
                fee = min((inv.price * FEE_BP + 5_000) // 10_000, owed)
                tiyn[unalloc] -= allocated
                tiyn["zone:fees"] += fee
                if inv.direct:
                    tiyn[f"merchant:{m}:sales"] += allocated
                    tiyn[f"merchant:{m}:fees_due"] += fee
                else:
                    tiyn[f"merchant:{m}:payable"] += owed - fee
                    tiyn["zone:rounding"] += allocated - owed
            if inv.closed and sum(values) > allocated:
                back = sum(values) - allocated
                tiyn[unalloc] -= back
                tiyn[f"merchant:{m}:refunds_owed" if inv.direct else "zone:refunds_due"] += back
        for sat, proceeds, book in self.conversions:
            tiyn["zone:clearing:btc"] -= book
            atomic["zone:clearing:btc"] -= sat
            tiyn["zone:bank"] += proceeds
            tiyn["zone:fx_result"] += proceeds - book
        for inv, refund_tiyn, refund_sat in self.refunds:
            m = inv.merchant_id
            held = f"merchant:{m}:crypto_received:btc" if inv.direct else "zone:clearing:btc"
            owed = f"merchant:{m}:refunds_owed" if inv.direct else "zone:refunds_due"
            tiyn[held] -= refund_tiyn
            atomic[held] -= refund_sat
            tiyn[owed] -= refund_tiyn
        for merchant_id, paid in self.payouts.items():
            tiyn[f"merchant:{merchant_id}:payable"] -= paid
            tiyn["zone:bank"] -= paid
        out: dict[str, tuple[int, int | None]] = {}
        for code in set(tiyn) | set(atomic):
            carries = code.startswith("zone:clearing:") or ":crypto_received:" in code
            if tiyn[code] or atomic[code]:
                out[code] = (tiyn[code], atomic[code] if carries else None)
        return out


class Scenario:
    def __init__(self, world: World, cli: Callable[..., Any]) -> None:
        self.world, self.cli, self.model = world, cli, Model()

    def merchant(self, name: str, mode: str) -> int:
        created = self.cli(
            "merchant", "create", "--name", name, "--settlement", mode,
            "--payout-hold-hours", "1",
        )  # fmt: skip
        return int(created["id"])

    def invoice(self, merchant_id: int, direct: bool, kzt: str = "2500") -> Inv:
        data = self.cli(
            "invoice", "create", "--merchant", str(merchant_id), "--amount-kzt", kzt,
            "--method", "btc",
        )  # fmt: skip
        loaded = self.world.load(data["id"])
        inv = Inv(
            loaded.id, merchant_id, direct, loaded.price_tiyn, loaded.amount_due_atomic,
            loaded.rate,
        )  # fmt: skip
        self.model.invoices[inv.id] = inv
        return inv

    def pay(self, inv: Inv, sat: int) -> str:
        return self.world.chain.pay(self.world.address(inv.id), sat)

    def confirm(self, inv: Inv, status: InvoiceStatus) -> None:
        self.world.chain.mine(1)
        self.world.until(inv.id, status_is(status))

    def check(self, step: str) -> None:
        self.world.tick()
        self.world.tick()  # the booking after the watcher's pass
        report = self.cli("report", "balances")
        assert report["balanced"], step
        got = {
            a["code"]: (a["balance_tiyn"], a.get("balance_atomic"))
            for a in report["accounts"]
            if a["balance_tiyn"] or a.get("balance_atomic")
        }
        assert got == self.model.balances(), step
        recon = self.cli("report", "reconcile")
        assert recon["differences"] == [], step
        assert recon["method_differences"] == 0, (step, recon["methods"])


@pytest.fixture
def scenario(runtime: Runtime, sandbox_chain: Chain, cli: Callable[..., Any]) -> Iterator[Scenario]:
    with runtime.session_factory.begin() as session:
        from pos import accounts

        placeholder = accounts.create_merchant(session, runtime.settings, "Watcher Harness")
    world = make_world(runtime, sandbox_chain, placeholder)
    yield Scenario(world, cli)
    world.close()


@pytest.mark.parametrize("mode", ["tenge", "direct"])
def test_both_settlement_modes_book_every_payment_exactly_once(
    scenario: Scenario, runtime: Runtime, mode: str, tmp_path: Path
) -> None:
    s, direct = scenario, mode == "direct"
    if direct:
        from pos.demo_wallets import demo_account_xpub

        xpub = demo_account_xpub("scenario direct", runtime.settings.bitcoin_network)
        made = s.cli(
            "merchant", "create", "--name", "Direct Shop", "--settlement", "direct",
            "--btc-xpub", xpub,
        )  # fmt: skip
        shop = int(made["id"])
    else:
        shop = s.merchant("Tenge Shop", "tenge")

    # 1. pay exactly
    exact = s.invoice(shop, direct)
    s.pay(exact, exact.due)
    s.confirm(exact, InvoiceStatus.SETTLED)
    exact.final, exact.settled, exact.closed = [exact.due], True, True
    s.check("pay exactly")
    rounding = value(exact.rate, exact.due) - exact.price
    assert s.model.balances().get("zone:refunds_due") is None and rounding >= 0

    # 2. pay over (+10 %)
    over = s.invoice(shop, direct)
    s.pay(over, over.due * 11 // 10)
    s.confirm(over, InvoiceStatus.SETTLED)
    over.final, over.settled, over.closed = [over.due * 11 // 10], True, True
    s.check("pay over")

    # 3. pay twice (60 % + 60 %), and 4. pay after settlement (to the exact invoice again)
    twice = s.invoice(shop, direct)
    first, second = twice.due * 6 // 10, twice.due - twice.due * 6 // 10 + twice.due // 5
    s.pay(twice, first)
    s.pay(twice, second)
    s.confirm(twice, InvoiceStatus.SETTLED)
    twice.final, twice.settled, twice.closed = [first, second], True, True
    late_sat = 50_000
    s.pay(exact, late_sat)
    s.world.chain.mine(1)
    s.world.until(exact.id, lambda i: len(i.payments) == 2 and all(
        p.status.value == "final" for p in i.payments))  # fmt: skip
    exact.final.append(late_sat)
    s.check("pay twice, and pay after settlement")

    # 5. partial, then expired
    partial = s.invoice(shop, direct)
    s.pay(partial, partial.due // 2)
    s.world.chain.mine(1)
    s.world.until(partial.id, lambda i: bool(i.payments) and i.payments[0].status.value == "final")
    partial.final = [partial.due // 2]
    s.check("partial, still open")
    s.world.expire_in(partial.id, -1)
    s.world.until(partial.id, status_is(InvoiceStatus.EXPIRED))
    partial.closed = True
    s.check("partial, then expired")

    # 6. a double spend of an unconfirmed second payment
    ds = s.invoice(shop, direct)
    s.pay(ds, ds.due)
    s.confirm(ds, InvoiceStatus.SETTLED)
    extra = s.pay(ds, 40_000)
    s.world.until(ds.id, lambda i: len(i.payments) == 2)
    ds.final, ds.settled, ds.closed = [ds.due], True, True
    s.check("an unconfirmed second payment is not booked")
    s.world.chain.double_spend(extra)
    s.world.chain.mine(1)
    s.world.until(ds.id, lambda i: any(p.status.value == "replaced" for p in i.payments))
    s.check("its double spend changes nothing")

    # 7. a refund of the overpayment: claimed, sent (by the zone from its own coins in
    # `tenge`, by the merchant's wallet in `direct`), confirmed by the watcher, then posted
    made = s.cli("refunds", "create", "--invoice", over.id)
    owed_sat = over.final[0] - over.due
    owed_tiyn = value(over.rate, over.final[0]) - value(over.rate, over.due)
    assert (made["amount_atomic"], made["amount_tiyn"]) == (owed_sat, owed_tiyn)
    with runtime.session_factory() as session:
        refunds.claim(session, runtime.settings, made["claim_path"].split("/")[-1], SHOPPER)
        session.commit()
    if direct:
        refund_txid = s.world.chain.pay(SHOPPER, owed_sat)
    else:
        loaded = s.world.load(over.id)
        raw = zone_spend(loaded.payments[0], loaded.btc_derivation_index or 0, SHOPPER, owed_sat)
        refund_txid = s.world.chain.send_raw(raw)
    s.cli("refunds", "record-sent", str(made["id"]), "--txid", refund_txid)
    s.check("refund sent, not yet confirmed: nothing posted")
    s.world.chain.mine(1)
    for _ in range(50):
        s.world.tick()
        listed = s.cli("refunds", "list")["refunds"]
        if listed[0]["status"] == "confirmed":
            break
    assert listed[0]["status"] == "confirmed", listed[0]
    s.model.refunds.append((over, owed_tiyn, owed_sat))
    s.check("refund confirmed")

    # 8. reorg after settlement, the payment dropped (last: the node restarts without the
    # shopper's wallet, which is what keeps the transaction from coming back)
    reorged = s.invoice(shop, direct)
    s.pay(reorged, reorged.due)
    s.confirm(reorged, InvoiceStatus.SETTLED)
    reorged.final, reorged.settled, reorged.closed = [reorged.due], True, True
    s.check("settled before the reorg")
    s.world.chain.reorg(1, remine=False)
    s.world.until(reorged.id, status_is(InvoiceStatus.PROCESSING))
    reorged.final, reorged.settled, reorged.closed = [], False, False
    s.check("reorged out after settlement")

    if direct:
        assert s.cli("payouts", "run", "--date", _today())["created"] == []
        assert s.cli("payouts", "list", "--merchant", str(shop))["payouts"] == []
        refused = s.cli(
            "conversions", "record", "--method", "btc", "--amount-atomic", "1000",
            "--proceeds-tiyn", "1", ok=False,
        )  # fmt: skip
        assert refused.code != 0 and "holds 0 sat" in refused.err
        return

    # 9. conversions at a gain and at a loss (weighted-average book value)
    held_tiyn, held_sat = s.model.balances()["zone:clearing:btc"]
    assert held_sat is not None
    half = held_sat // 2
    book = (2 * held_tiyn * half + held_sat) // (2 * held_sat)
    s.cli(
        "conversions", "record", "--method", "btc", "--amount-atomic", str(half),
        "--proceeds-tiyn", str(book + 1_234), "--reference", "EXMO-1",
    )  # fmt: skip
    s.model.conversions.append((half, book + 1_234, book))
    s.check("conversion at a gain")
    rest_tiyn, rest_sat = held_tiyn - book, held_sat - half
    s.cli(
        "conversions", "record", "--method", "btc", "--amount-atomic", str(rest_sat),
        "--proceeds-tiyn", str(rest_tiyn - 777), "--reference", "EXMO-2",
    )  # fmt: skip
    s.model.conversions.append((rest_sat, rest_tiyn - 777, rest_tiyn))
    s.check("conversion at a loss, the whole balance")
    too_much = s.cli(
        "conversions", "record", "--method", "btc", "--amount-atomic", "1",
        "--proceeds-tiyn", "1", ok=False,
    )  # fmt: skip
    assert too_much.code != 0 and "holds 0 sat" in too_much.err

    # 10. payouts: nothing within the hold (1 h); with the hold over, the whole payable
    assert s.cli("payouts", "run", "--date", _today())["created"] == []
    s.cli("merchant", "settlement", "--merchant", str(shop), "--mode", "tenge",
          "--payout-hold-hours", "0")  # fmt: skip
    [payout_id] = s.cli("payouts", "run", "--date", _today())["created"]
    [payout] = s.cli("payouts", "list", "--merchant", str(shop))["payouts"]
    owed = s.model.balances()[f"merchant:{shop}:payable"][0]
    assert payout["id"] == payout_id and payout["amount_tiyn"] == owed > 0
    s.cli("payouts", "mark-paid", str(payout_id), "--reference", "KZ-BANK-1")
    s.model.payouts[shop] += owed
    s.check("payout after the hold")
    assert f"merchant:{shop}:payable" not in s.model.balances()


def _today() -> str:
    from pos import business_day

    return business_day.today().isoformat()
