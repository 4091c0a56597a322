"""The drills' audit rules (drills.audit), pure: what counts as lost, duplicated, unbalanced or a
wrong state, and the table. (`python -m drills --quick` itself runs as a step of
scripts/run-tests.sh in CI: it starts its own stack, PostgreSQL included.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drills.audit import (
    Event,
    InvoiceFacts,
    Row,
    Truth,
    combine,
    expected_statuses,
    format_table,
    judge,
    total,
)
from pos.states import InvoiceStatus

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PAID_AT = NOW - timedelta(minutes=5)
EXPIRES = NOW + timedelta(minutes=10)


def ev(kind: str, frm: str | None, to: str, seconds: float = 0.0) -> Event:
    return Event(f"invoice.{kind}", frm, to, PAID_AT + timedelta(seconds=seconds))


def settled_facts(**extra: int) -> InvoiceFacts:
    facts = InvoiceFacts(
        InvoiceStatus.SETTLED,
        payments=[("tx1", 0, "final")],
        events=[
            ev("created", None, "new", -10),
            ev("processing", "new", "processing", 2.5),
            ev("settled", "processing", "settled", 30),
        ],
        settlements=1,
    )
    for name, value in extra.items():
        setattr(facts, name, value)
    return facts


def test_a_final_payment_settled_once_is_clean_and_its_delay_measured() -> None:
    verdict = judge(settled_facts(), Truth.FINAL, ["tx1"], PAID_AT, EXPIRES, NOW)
    assert not (verdict.lost or verdict.wrong or verdict.duplicated or verdict.unbalanced)
    assert verdict.settled and verdict.delay_seconds == 2.5


def test_a_final_payment_whose_invoice_is_not_settled_is_lost() -> None:
    facts = InvoiceFacts(InvoiceStatus.PROCESSING, payments=[("tx1", 0, "seen")])
    verdict = judge(facts, Truth.FINAL, ["tx1"], PAID_AT, EXPIRES, NOW)
    assert verdict.lost and not verdict.wrong
    assert judge(None, Truth.FINAL, ["tx1"], PAID_AT, EXPIRES, NOW).lost  # not even recorded


def test_settled_without_a_final_payment_is_a_wrong_state() -> None:
    for truth in (Truth.PENDING, Truth.GONE, Truth.CONFLICTED, Truth.UNPAID):
        verdict = judge(settled_facts(), truth, ["tx1"], PAID_AT, EXPIRES, NOW)
        assert verdict.wrong and not verdict.lost, truth


def test_a_double_spent_payment_must_leave_the_invoice_invalid() -> None:
    invalid = InvoiceFacts(InvoiceStatus.INVALID, payments=[("tx1", 0, "replaced")])
    assert not judge(invalid, Truth.CONFLICTED, ["tx1"], PAID_AT, EXPIRES, NOW).wrong
    processing = InvoiceFacts(InvoiceStatus.PROCESSING, payments=[("tx1", 0, "seen")])
    assert judge(processing, Truth.CONFLICTED, ["tx1"], PAID_AT, EXPIRES, NOW).wrong


def test_expiring_an_invoice_paid_before_its_expiry_is_a_wrong_state() -> None:
    facts = settled_facts()
    facts.events.insert(1, ev("expired", "new", "expired", 1))
    verdict = judge(facts, Truth.FINAL, ["tx1"], PAID_AT, EXPIRES, NOW)
    assert verdict.wrong and not verdict.lost
    # Paid after its expiry: the late payment may follow an honest expiry.
    late = judge(facts, Truth.FINAL, ["tx1"], PAID_AT, PAID_AT - timedelta(seconds=5), NOW)
    assert not late.wrong


def test_unpaid_invoices_must_expire_once_their_window_is_well_past() -> None:
    new = InvoiceFacts(InvoiceStatus.NEW)
    assert not judge(new, Truth.UNPAID, [], None, EXPIRES, NOW).wrong
    past = NOW - timedelta(minutes=2)
    assert judge(new, Truth.UNPAID, [], None, past, NOW).wrong
    assert not judge(InvoiceFacts(InvoiceStatus.EXPIRED), Truth.UNPAID, [], None, past, NOW).wrong


def test_someone_elses_payment_or_a_second_settle_is_a_duplicate() -> None:
    stranger = settled_facts()
    stranger.payments.append(("tx9", 1, "final"))
    assert judge(stranger, Truth.FINAL, ["tx1"], PAID_AT, EXPIRES, NOW).duplicated
    twice = settled_facts()
    twice.events.append(ev("settled", "settled", "settled", 40))
    assert judge(twice, Truth.FINAL, ["tx1"], PAID_AT, EXPIRES, NOW).duplicated
    # Settled, reopened by a reorg, settled again: one net settlement, no duplicate.
    again = settled_facts(settlements=2, reversals=1)
    again.events += [
        ev("reopened", "settled", "processing", 50),
        ev("settled", "processing", "settled", 60),
    ]
    verdict = judge(again, Truth.FINAL, ["tx1"], PAID_AT, EXPIRES, NOW)
    assert not verdict.duplicated and not verdict.unbalanced
    posted_twice = settled_facts(settlements=2)
    assert judge(posted_twice, Truth.FINAL, ["tx1"], PAID_AT, EXPIRES, NOW).duplicated


def test_postings_that_disagree_with_the_status_are_unbalanced() -> None:
    missing = settled_facts(settlements=0)
    assert judge(missing, Truth.FINAL, ["tx1"], PAID_AT, EXPIRES, NOW).unbalanced
    skewed = settled_facts(unbalanced_postings=1)
    assert judge(skewed, Truth.FINAL, ["tx1"], PAID_AT, EXPIRES, NOW).unbalanced
    reopened = InvoiceFacts(InvoiceStatus.PROCESSING, [("tx1", 0, "reorged")], settlements=1)
    assert judge(reopened, Truth.GONE, ["tx1"], PAID_AT, EXPIRES, NOW).unbalanced  # no reversal


def test_truths_combine_to_the_best_one_and_allow_grace() -> None:
    assert combine([Truth.CONFLICTED, Truth.FINAL]) is Truth.FINAL
    assert combine([Truth.CONFLICTED]) is Truth.CONFLICTED
    assert combine([]) is Truth.UNPAID
    gone = expected_statuses(Truth.GONE, EXPIRES, NOW)
    assert gone == {InvoiceStatus.PROCESSING, InvoiceStatus.INVALID}


def test_a_failing_row_fails_the_total_and_the_table_lists_it() -> None:
    clean = Row("sqlite/core", "two workers", payments=3, settled=3, max_delay_seconds=1.25)
    broken = Row("sqlite/core", "reorg depth 6, dropped", payments=1, wrong=1, five_xx=2)
    summed = total("sqlite/core", [clean, broken])
    assert not clean.failed and broken.failed and summed.failed
    assert (summed.payments, summed.wrong, summed.five_xx, summed.max_delay_seconds) == (
        4,
        1,
        2,
        1.25,
    )
    table = format_table([clean, broken, summed]).splitlines()
    assert table[0].startswith("| stack") and "max detection delay" in table[0]
    assert len(table) == 5 and "1.2 s" in table[2] and table[3].count("|") == 11
