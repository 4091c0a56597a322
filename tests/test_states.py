import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos.errors import IllegalTransitionError
from pos.states import TRANSITIONS, EventType, InvoiceStatus, can_transition, transition

statuses = st.sampled_from(list(InvoiceStatus))


def test_happy_path() -> None:
    assert transition(InvoiceStatus.NEW, InvoiceStatus.PROCESSING) is EventType.PROCESSING
    assert transition(InvoiceStatus.PROCESSING, InvoiceStatus.SETTLED) is EventType.SETTLED


def test_reorg_reopens_a_settled_invoice() -> None:
    assert transition(InvoiceStatus.SETTLED, InvoiceStatus.PROCESSING) is EventType.REOPENED


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (InvoiceStatus.SETTLED, InvoiceStatus.NEW),
        (InvoiceStatus.EXPIRED, InvoiceStatus.NEW),
        (InvoiceStatus.INVALID, InvoiceStatus.EXPIRED),
        (InvoiceStatus.NEW, InvoiceStatus.NEW),
        (InvoiceStatus.PROCESSING, InvoiceStatus.EXPIRED),
    ],
)
def test_illegal_transitions_raise(current: InvoiceStatus, target: InvoiceStatus) -> None:
    with pytest.raises(IllegalTransitionError):
        transition(current, target)


def test_every_status_has_a_row_and_nothing_returns_to_new() -> None:
    assert set(TRANSITIONS) == set(InvoiceStatus)
    assert all(InvoiceStatus.NEW not in targets for targets in TRANSITIONS.values())


@given(st.lists(statuses, max_size=30))
def test_any_sequence_follows_the_table(targets: list[InvoiceStatus]) -> None:
    current = InvoiceStatus.NEW
    for target in targets:
        if can_transition(current, target):
            event = transition(current, target)
            assert event.value.startswith("invoice.")
            current = target
        else:
            with pytest.raises(IllegalTransitionError):
                transition(current, target)
    assert current in InvoiceStatus
