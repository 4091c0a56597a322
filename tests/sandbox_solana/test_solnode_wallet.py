"""The shopper wallet paying Solana Pay URIs on the sandbox validator, with its drills."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from sandbox.solana import rpc, spl
from sandbox.solana.errors import (
    InsufficientFundsError,
    MalformedUriError,
    UnsupportedUriError,
    WalletError,
)
from sandbox.solana.validator import RunningValidator, start_validator
from sandbox.solana.wallet import pay_uri, wallet_keypair


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("solnode-wallet")


@pytest.fixture(scope="module")
def validator(data_dir: Path) -> Iterator[RunningValidator]:
    with start_validator(data_dir) as running:
        yield running


@pytest.fixture(scope="module")
def wallet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shopper")


@dataclass
class Ix:
    program: Pubkey
    keys: list[tuple[Pubkey, bool, bool]]  # (key, is_signer, is_writable)
    data: bytes


def _writable(message: Message, index: int) -> bool:
    header = message.header
    signers = header.num_required_signatures
    if index < signers:
        return index < signers - header.num_readonly_signed_accounts
    return index < len(message.account_keys) - header.num_readonly_unsigned_accounts


def _uri(validator: RunningValidator, recipient: Pubkey, amount: str, *refs: Pubkey) -> str:
    query = f"amount={amount}&spl-token={validator.kzte_mint}"
    query += "".join(f"&reference={r}" for r in refs)
    return f"solana:{recipient}?{query}&label=Shop&message=Thanks&memo=order%20{amount}"


def _balance(validator: RunningValidator, owner: Pubkey, mint: str | None = None) -> int:
    async def read() -> int:
        async with rpc.client(validator.rpc_url) as conn:
            ata = spl.associated_token_address(
                owner, Pubkey.from_string(mint or validator.kzte_mint)
            )
            return await rpc.token_balance(conn, ata)

    return asyncio.run(read())


def _instructions(validator: RunningValidator, sig: str) -> list[Ix]:
    async def read() -> list[Ix]:
        async with rpc.client(validator.rpc_url) as conn:
            resp = await conn.get_transaction(
                Signature.from_string(sig), "base64", Confirmed, max_supported_transaction_version=0
            )
            assert resp.value is not None
            tx = resp.value.transaction.transaction
            assert isinstance(tx, VersionedTransaction)
            msg = tx.message
            assert isinstance(msg, Message)  # the wallet sends legacy transactions
            keys = msg.account_keys
            return [
                Ix(
                    keys[ix.program_id_index],
                    [(keys[i], msg.is_signer(i), _writable(msg, i)) for i in bytes(ix.accounts)],
                    bytes(ix.data),
                )
                for ix in msg.instructions
            ]

    return asyncio.run(read())


def _signatures_for(validator: RunningValidator, reference: Pubkey) -> list[str]:
    async def read() -> list[str]:
        async with rpc.client(validator.rpc_url) as conn:
            resp = await conn.get_signatures_for_address(reference, commitment=Confirmed)
            return [str(s.signature) for s in resp.value]

    return asyncio.run(read())


def test_pay_uri_moves_exact_amount_and_is_found_by_reference(
    validator: RunningValidator, data_dir: Path, wallet_dir: Path
) -> None:
    merchant, ref1, ref2 = (Keypair().pubkey() for _ in range(3))
    uri = _uri(validator, merchant, "12.345678", ref1, ref2)
    sigs = pay_uri(uri, rpc_url=validator.rpc_url, wallet_dir=wallet_dir, faucet_data_dir=data_dir)
    assert len(sigs) == 1
    assert _balance(validator, merchant) == 12_345_678
    assert _signatures_for(validator, ref1) == sigs
    assert _signatures_for(validator, ref2) == sigs

    ixs = _instructions(validator, sigs[0])
    create, memo, transfer = ixs[-3], ixs[-2], ixs[-1]
    assert create.program == spl.ASSOCIATED_TOKEN_PROGRAM_ID and create.data == b"\x01"
    assert memo.program == spl.MEMO_PROGRAM_ID
    assert memo.data == b"order 12.345678"
    assert memo.keys == []  # no signer keys on the memo
    assert transfer.program == spl.TOKEN_PROGRAM_ID
    assert transfer.data[0] == 12  # TransferChecked
    assert int.from_bytes(transfer.data[1:9], "little") == 12_345_678
    assert transfer.data[9] == 6
    payer = wallet_keypair(wallet_dir).pubkey()
    mint = Pubkey.from_string(validator.kzte_mint)
    assert transfer.keys == [
        (spl.associated_token_address(payer, mint), False, True),
        (mint, False, False),
        (spl.associated_token_address(merchant, mint), False, True),
        (payer, True, True),  # writable in the message only because it pays the fee
        (ref1, False, False),
        (ref2, False, False),
    ]


def test_second_payment_skips_ata_creation(
    validator: RunningValidator, data_dir: Path, wallet_dir: Path
) -> None:
    merchant, ref = Keypair().pubkey(), Keypair().pubkey()
    pay_uri(
        _uri(validator, merchant, "1", Keypair().pubkey()),
        rpc_url=validator.rpc_url,
        wallet_dir=wallet_dir,
        faucet_data_dir=data_dir,
    )
    [sig] = pay_uri(
        _uri(validator, merchant, "2", ref),
        rpc_url=validator.rpc_url,
        wallet_dir=wallet_dir,
        faucet_data_dir=data_dir,
    )
    programs = [ix.program for ix in _instructions(validator, sig)]
    assert programs == [spl.MEMO_PROGRAM_ID, spl.TOKEN_PROGRAM_ID]
    assert _balance(validator, merchant) == 3_000_000


@pytest.mark.parametrize(("factor", "expected"), [("0.5", 5_000_000), ("1.25", 12_500_000)])
def test_drill_pay_less_or_more(
    validator: RunningValidator, data_dir: Path, wallet_dir: Path, factor: str, expected: int
) -> None:
    merchant = Keypair().pubkey()
    pay_uri(
        _uri(validator, merchant, "10", Keypair().pubkey()),
        rpc_url=validator.rpc_url,
        wallet_dir=wallet_dir,
        amount_factor=Decimal(factor),
        faucet_data_dir=data_dir,
    )
    assert _balance(validator, merchant) == expected


def test_drill_pay_twice(validator: RunningValidator, data_dir: Path, wallet_dir: Path) -> None:
    merchant, ref = Keypair().pubkey(), Keypair().pubkey()
    sigs = pay_uri(
        _uri(validator, merchant, "0.75", ref),
        rpc_url=validator.rpc_url,
        wallet_dir=wallet_dir,
        times=2,
        faucet_data_dir=data_dir,
    )
    assert len(set(sigs)) == 2
    assert _balance(validator, merchant) == 1_500_000
    assert sorted(_signatures_for(validator, ref)) == sorted(sigs)


def test_drill_wrong_mint(validator: RunningValidator, data_dir: Path, wallet_dir: Path) -> None:
    merchant, ref = Keypair().pubkey(), Keypair().pubkey()
    [sig] = pay_uri(
        _uri(validator, merchant, "4", ref),
        rpc_url=validator.rpc_url,
        wallet_dir=wallet_dir,
        wrong_mint=True,
        faucet_data_dir=data_dir,
    )
    transfer = _instructions(validator, sig)[-1]
    wrong = transfer.keys[1][0]
    assert wrong != Pubkey.from_string(validator.kzte_mint)
    assert transfer.data[9] == 6  # same decimals as KZTE
    assert _balance(validator, merchant) == 0
    assert _balance(validator, merchant, str(wrong)) == 4_000_000
    assert _signatures_for(validator, ref) == [sig]


def test_sol_transfer_request(
    validator: RunningValidator, data_dir: Path, wallet_dir: Path
) -> None:
    merchant, ref = Keypair().pubkey(), Keypair().pubkey()
    uri = f"solana:{merchant}?amount=0.001234567&reference={ref}&memo=sol"
    [sig] = pay_uri(uri, rpc_url=validator.rpc_url, wallet_dir=wallet_dir, faucet_data_dir=data_dir)
    ixs = _instructions(validator, sig)
    assert [ix.program for ix in ixs] == [spl.MEMO_PROGRAM_ID, spl.SYSTEM_PROGRAM_ID]
    assert ixs[-1].keys[-1] == (ref, False, False)

    async def lamports() -> int:
        async with rpc.client(validator.rpc_url) as conn:
            return await rpc.sol_balance(conn, merchant)

    assert asyncio.run(lamports()) == 1_234_567


def test_more_decimals_than_the_mint_is_malformed(
    validator: RunningValidator, data_dir: Path, wallet_dir: Path
) -> None:
    merchant = Keypair().pubkey()
    with pytest.raises(MalformedUriError, match="7 decimal places; the token allows 6"):
        pay_uri(
            _uri(validator, merchant, "1.0000001"),
            rpc_url=validator.rpc_url,
            wallet_dir=wallet_dir,
            faucet_data_dir=data_dir,
        )
    assert _balance(validator, merchant) == 0


def test_unknown_mint_and_missing_amount_are_refused(
    validator: RunningValidator, wallet_dir: Path
) -> None:
    merchant = Keypair().pubkey()
    with pytest.raises(WalletError, match="does not exist"):
        pay_uri(
            f"solana:{merchant}?amount=1&spl-token={Keypair().pubkey()}",
            rpc_url=validator.rpc_url,
            wallet_dir=wallet_dir,
        )
    with pytest.raises(UnsupportedUriError, match="no amount"):
        pay_uri(
            f"solana:{merchant}?spl-token={validator.kzte_mint}",
            rpc_url=validator.rpc_url,
            wallet_dir=wallet_dir,
        )


def test_recipient_token_account_is_refused(
    validator: RunningValidator, data_dir: Path, wallet_dir: Path
) -> None:
    merchant = Keypair().pubkey()
    pay_uri(
        _uri(validator, merchant, "1"),
        rpc_url=validator.rpc_url,
        wallet_dir=wallet_dir,
        faucet_data_dir=data_dir,
    )
    ata = spl.associated_token_address(merchant, Pubkey.from_string(validator.kzte_mint))
    with pytest.raises(MalformedUriError, match="token account"):
        pay_uri(_uri(validator, ata, "1"), rpc_url=validator.rpc_url, wallet_dir=wallet_dir)


def test_empty_wallet_without_faucet_is_refused(
    validator: RunningValidator, tmp_path: Path
) -> None:
    with pytest.raises(InsufficientFundsError, match="faucet"):
        pay_uri(
            _uri(validator, Keypair().pubkey(), "1"), rpc_url=validator.rpc_url, wallet_dir=tmp_path
        )
