"""The Solana Pay transfer rules (pure), and one wallet variant paid on the sandbox chain:
a v0 transaction with a signed memo and a plain `Transfer` (not `TransferChecked`)."""

from __future__ import annotations

import asyncio
import struct

import pytest
from kzte_support import Shop
from solana.rpc.commitment import Confirmed
from solana.rpc.models import TxOpts
from solders.instruction import AccountMeta
from solders.instruction import Instruction as SoldersInstruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from pos.states import InvoiceStatus
from sandbox.solana import rpc as sandbox_rpc
from sandbox.solana.mint import faucet
from sandbox.solana.wallet import wallet_keypair
from settlement.chains.solana_rpc import ChainTransaction, Instruction, TokenBalance
from settlement.kzte_validation import (
    TOKEN_PROGRAM,
    ExpectedTransfer,
    associated_token_address,
    validate_transfer,
)

MEMO_V2 = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"
PAYER, SOURCE = str(Keypair().pubkey()), str(Keypair().pubkey())
MERCHANT, MINT, REF = str(Keypair().pubkey()), str(Keypair().pubkey()), str(Keypair().pubkey())
EXPECTED = ExpectedTransfer(MERCHANT, MINT, REF, "inv1")
ATA = associated_token_address(MERCHANT, MINT)


def _tx(
    *,
    checked: bool = True,
    mint: str = MINT,
    destination: str = ATA,
    refs: tuple[str, ...] = (REF,),
    memo: str | None = "inv1",
    memo_signer: bool = False,
    pre: int | None = 5,
    post: int = 105,
    failed: bool = False,
) -> ChainTransaction:
    keys = (PAYER, SOURCE, destination, mint, TOKEN_PROGRAM, MEMO_V2, *refs)
    ixs = []
    if memo is not None:
        ixs.append(Instruction(MEMO_V2, (PAYER,) if memo_signer else (), memo.encode()))
    if checked:
        data = bytes([12]) + struct.pack("<Q", post - (pre or 0)) + bytes([6])
        accounts = (SOURCE, mint, destination, PAYER, *refs)
    else:
        data = bytes([3]) + struct.pack("<Q", post - (pre or 0))
        accounts = (SOURCE, destination, PAYER, *refs)
    ixs.append(Instruction(TOKEN_PROGRAM, accounts, data))
    pre_balances = () if pre is None else (TokenBalance(2, mint, MERCHANT, pre),)
    return ChainTransaction(
        "sig",
        1,
        failed,
        "0",
        keys,
        tuple(ixs),
        pre_balances,
        (TokenBalance(2, mint, MERCHANT, post),),
    )


@pytest.mark.parametrize(
    "tx",
    [
        _tx(),
        _tx(checked=False),
        _tx(memo=None),
        _tx(memo_signer=True),
        _tx(refs=(str(Keypair().pubkey()), REF)),  # extra references are fine
    ],
)
def test_valid_transfers_count_the_balance_change(tx: ChainTransaction) -> None:
    verdict = validate_transfer(tx, EXPECTED)
    assert verdict.ok and verdict.amount_base_units == 100


def test_new_token_account_counts_from_zero() -> None:
    verdict = validate_transfer(_tx(pre=None, post=250), EXPECTED)
    assert verdict.ok and verdict.amount_base_units == 250


@pytest.mark.parametrize(
    ("tx", "reason", "suspicious"),
    [
        (_tx(failed=True), "failed", False),
        (_tx(mint=str(Keypair().pubkey())), "wrong mint", True),
        (_tx(checked=False, mint=str(Keypair().pubkey())), "wrong mint", True),
        (_tx(destination=str(Keypair().pubkey())), "wrong recipient", True),
        (_tx(refs=()), "reference", False),
        (_tx(memo="someone else"), "memo", True),
        (_tx(pre=105, post=105), "did not grow", False),
    ],
)
def test_invalid_transfers_are_not_counted(
    tx: ChainTransaction, reason: str, suspicious: bool
) -> None:
    verdict = validate_transfer(tx, EXPECTED)
    assert not verdict.ok and reason in verdict.reason and verdict.suspicious is suspicious


def test_transfer_must_be_the_last_instruction() -> None:
    tx = _tx()
    moved = ChainTransaction(
        tx.signature,
        tx.slot,
        tx.failed,
        tx.version,
        tx.account_keys,
        (tx.instructions[1], tx.instructions[0]),
        tx.pre_token_balances,
        tx.post_token_balances,
    )
    assert "not a token transfer" in validate_transfer(moved, EXPECTED).reason


def test_v0_transfer_with_signed_memo_is_detected(shop: Shop) -> None:
    invoice = shop.invoice(120_00)
    payer = wallet_keypair(shop.shopper_dir)
    faucet(
        shop.validator.rpc_url,
        shop.validator.data_dir,
        str(payer.pubkey()),
        kzte_base_units=invoice.amount_due_atomic,
        sol_lamports=10**9,
    )
    mint = Pubkey.from_string(shop.validator.kzte_mint)
    merchant = Pubkey.from_string(shop.wallet)
    token = Pubkey.from_string(TOKEN_PROGRAM)
    source = Pubkey.from_string(associated_token_address(str(payer.pubkey()), str(mint)))
    destination = Pubkey.from_string(associated_token_address(shop.wallet, str(mint)))
    ata_program = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
    system = Pubkey.from_string("11111111111111111111111111111111")
    create_ata = SoldersInstruction(
        ata_program,
        bytes([1]),
        [
            AccountMeta(payer.pubkey(), True, True),
            AccountMeta(destination, False, True),
            AccountMeta(merchant, False, False),
            AccountMeta(mint, False, False),
            AccountMeta(system, False, False),
            AccountMeta(token, False, False),
        ],
    )
    # @solana/pay 1.0.16 style: the memo names the payer as a signer.
    memo = SoldersInstruction(
        Pubkey.from_string(MEMO_V2), invoice.id.encode(), [AccountMeta(payer.pubkey(), True, False)]
    )
    transfer = SoldersInstruction(
        token,
        bytes([3]) + struct.pack("<Q", invoice.amount_due_atomic),
        [
            AccountMeta(source, False, True),
            AccountMeta(destination, False, True),
            AccountMeta(payer.pubkey(), True, False),
            AccountMeta(Pubkey.from_string(invoice.kzte_reference or ""), False, False),
        ],
    )

    async def send() -> None:
        async with sandbox_rpc.client(shop.validator.rpc_url) as conn:
            blockhash = await sandbox_rpc.latest_blockhash(conn)
            message = MessageV0.try_compile(
                payer.pubkey(), [create_ata, memo, transfer], [], blockhash
            )
            tx = VersionedTransaction(message, [payer])
            sig = (
                await conn.send_raw_transaction(
                    bytes(tx), opts=TxOpts(preflight_commitment=Confirmed)
                )
            ).value
            await sandbox_rpc.wait_confirmed(conn, [sig])

    asyncio.run(send())
    seen = shop.drive_until(invoice.id, lambda i: i.status is not InvoiceStatus.NEW, "processing")
    assert seen.amount_paid_atomic == invoice.amount_due_atomic
