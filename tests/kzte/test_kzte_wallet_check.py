"""The node's view of a wallet at save time (settlement.wallet_check), on a real surfpool: a
mint someone made with a plain keypair passes every offline check, the node refuses it."""

from __future__ import annotations

import pytest
from solders.keypair import Keypair

from pos.errors import ValidationError
from pos.methods import kzte
from sandbox.solana.validator import RunningValidator
from settlement.wallet_check import check_wallet_on_chain


def test_the_node_refuses_a_mint_the_offline_checks_let_through(
    validator: RunningValidator,
) -> None:
    # Configured with another mint, the sandbox's KZTE mint is "just an on-curve address".
    assert kzte.parse_wallet(validator.kzte_mint, mint=str(Keypair().pubkey()))
    with pytest.raises(ValidationError, match="token mint or token account") as raised:
        check_wallet_on_chain(validator.rpc_url, validator.kzte_mint)
    assert raised.value.field == "solana_wallet"


@pytest.mark.parametrize(
    "program",
    ["TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA", "11111111111111111111111111111111"],
)
def test_the_node_refuses_a_program(validator: RunningValidator, program: str) -> None:
    with pytest.raises(ValidationError, match="is a Solana program"):
        check_wallet_on_chain(validator.rpc_url, program)


def test_a_fresh_wallet_passes_and_the_node_answered(validator: RunningValidator) -> None:
    assert check_wallet_on_chain(validator.rpc_url, str(Keypair().pubkey())) is True
