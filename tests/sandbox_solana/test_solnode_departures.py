"""Where surfpool 1.5.0 answers differently from a real Solana validator.

Each test pins down the behaviour actually observed (raw JSON-RPC, no client
parsing in between) so that the settlement adapter can be written to cope, and
so that an upgrade that changes the behaviour is noticed. See the README.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from sandbox.solana import spl
from sandbox.solana.validator import RunningValidator, start_validator
from sandbox.solana.wallet import pay_uri


@dataclass
class Payment:
    validator: RunningValidator
    signature: str
    reference: Pubkey
    merchant: Pubkey
    paid_at: float


def _call(url: str, method: str, *params: Any) -> dict[str, Any]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, body.encode(), {"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        reply: dict[str, Any] = json.load(response)
    return reply


def _result(url: str, method: str, *params: Any) -> Any:
    reply = _call(url, method, *params)
    assert "error" not in reply, reply
    return reply["result"]


@pytest.fixture(scope="module")
def payment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Payment]:
    data_dir = tmp_path_factory.mktemp("solnode-departures")
    with start_validator(data_dir) as validator:
        merchant, reference = Keypair().pubkey(), Keypair().pubkey()
        uri = (
            f"solana:{merchant}?amount=12.5&spl-token={validator.kzte_mint}"
            f"&reference={reference}&memo=departures"
        )
        [sig] = pay_uri(
            uri,
            rpc_url=validator.rpc_url,
            wallet_dir=data_dir / "shopper",
            faucet_data_dir=data_dir,
        )
        yield Payment(validator, sig, reference, merchant, time.time())


def test_finalized_queries_return_transactions_that_are_only_confirmed(payment: Payment) -> None:
    url = payment.validator.rpc_url
    # Runs right after the payment, well before the ~32 slots (~13 s) to finality.
    [status] = _result(url, "getSignatureStatuses", [payment.signature])["value"]
    assert status["confirmationStatus"] == "confirmed"

    # A real validator returns null here until the slot is rooted.
    for commitment in ("finalized", "confirmed", "processed"):
        # ... and rejects "processed" for getTransaction outright (-32602).
        tx = _result(
            url,
            "getTransaction",
            payment.signature,
            {"commitment": commitment, "maxSupportedTransactionVersion": 0},
        )
        assert tx is not None and tx["meta"]["err"] is None, commitment

    listed = _result(
        url, "getSignaturesForAddress", str(payment.reference), {"commitment": "finalized"}
    )
    assert [entry["signature"] for entry in listed] == [payment.signature]
    assert listed[0]["confirmationStatus"] == "confirmed"  # not finalized, yet listed


def test_get_transaction_block_time_is_a_thousand_times_smaller(payment: Payment) -> None:
    url = payment.validator.rpc_url
    tx = _result(
        url,
        "getTransaction",
        payment.signature,
        {"commitment": "confirmed", "maxSupportedTransactionVersion": 0},
    )
    [listed] = _result(url, "getSignaturesForAddress", str(payment.reference))
    block_time = _result(url, "getBlockTime", tx["slot"])
    # getSignaturesForAddress gives Unix seconds (getBlockTime agrees within a second) ...
    assert abs(listed["blockTime"] - payment.paid_at) < 60
    assert abs(block_time - listed["blockTime"]) <= 1
    # ... getTransaction gives the same instant divided by 1000 once more.
    assert abs(tx["blockTime"] * 1000 - listed["blockTime"]) < 2000
    assert tx["blockTime"] < 10**7


def test_token_amount_strings_are_not_trimmed_in_transactions(payment: Payment) -> None:
    url = payment.validator.rpc_url
    tx = _result(
        url,
        "getTransaction",
        payment.signature,
        {"commitment": "confirmed", "maxSupportedTransactionVersion": 0, "encoding": "jsonParsed"},
    )
    merchant_post = [
        b for b in tx["meta"]["postTokenBalances"] if b["owner"] == str(payment.merchant)
    ]
    amount = merchant_post[0]["uiTokenAmount"]
    assert amount["amount"] == "12500000"
    assert amount["uiAmountString"] == "12.500000"  # a real validator says "12.5"

    ata = spl.associated_token_address(
        payment.merchant, Pubkey.from_string(payment.validator.kzte_mint)
    )
    balance = _result(url, "getTokenAccountBalance", str(ata))["value"]
    assert balance["uiAmountString"] == "12.5"  # trimmed here, as on a real validator

    supply = _result(url, "getTokenSupply", payment.validator.kzte_mint)["value"]
    # getTokenSupply's uiAmountString repeats the raw base-unit amount.
    assert supply["uiAmountString"] == supply["amount"]
    assert supply["uiAmount"] == int(supply["amount"]) / 10**6


def test_blockhashes_are_synthetic(payment: Payment) -> None:
    url = payment.validator.rpc_url
    hashes = {
        c: _result(url, "getLatestBlockhash", {"commitment": c})["value"]["blockhash"]
        for c in ("processed", "confirmed", "finalized")
    }
    for blockhash in hashes.values():
        assert blockhash.startswith("SURFNETxSAFEHASHxxxxxxxx")
        Hash.from_string(blockhash)  # still a valid 32-byte base58 hash
    # The same hash is handed out whatever the commitment.
    assert len(set(hashes.values())) == 1
    tx = _result(
        url,
        "getTransaction",
        payment.signature,
        {"commitment": "confirmed", "maxSupportedTransactionVersion": 0},
    )
    assert tx["transaction"]["message"]["recentBlockhash"].startswith("SURFNETxSAFEHASH")
