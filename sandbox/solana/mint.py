"""The sandbox KZTE mint, SOL funding for demo merchants, and the shopper faucet.

The mint address comes from a keypair stored under ``<data_dir>/sandbox/solana``,
so it stays the same across validator restarts even though surfpool keeps its
ledger in memory and the mint is re-created on every start.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account

from sandbox.solana import rpc, spl
from sandbox.solana.errors import SolanaSandboxError, ValidatorError
from sandbox.solana.keys import faucet_keypair_path, load_or_create_keypair, mint_keypair_path

LAMPORTS_PER_SOL = 1_000_000_000
# Enough for thousands of ATA creations and fees; topped up when below half.
FAUCET_RESERVE_LAMPORTS = 100 * LAMPORTS_PER_SOL
MERCHANT_SOL_LAMPORTS = 10 * LAMPORTS_PER_SOL


def parse_pubkey(value: str, what: str = "address") -> Pubkey:
    """Parse a base58 public key, raising SolanaSandboxError with ``what`` in the message."""
    try:
        return Pubkey.from_string(value)
    except ValueError as exc:
        raise SolanaSandboxError(f"invalid {what} {value!r}: {exc}") from None


async def ensure_faucet_funded(conn: AsyncClient, faucet: Keypair) -> None:
    """Airdrop SOL to the faucet keypair when it runs low."""
    balance = await rpc.sol_balance(conn, faucet.pubkey())
    if balance < FAUCET_RESERVE_LAMPORTS // 2:
        await rpc.give_sol(conn, faucet.pubkey(), FAUCET_RESERVE_LAMPORTS - balance)


async def ensure_mint(
    conn: AsyncClient, mint: Keypair, authority: Keypair, decimals: int, payer: Keypair
) -> spl.MintInfo:
    """Create and initialise the SPL mint at ``mint.pubkey()`` unless it already exists.

    An existing mint must have the expected decimals and authority; otherwise
    ValidatorError is raised rather than silently using a foreign mint.
    """
    existing = await rpc.get_mint(conn, mint.pubkey())
    if existing is not None:
        if existing.decimals != decimals or existing.mint_authority != authority.pubkey():
            raise ValidatorError(
                f"mint {mint.pubkey()} exists with decimals={existing.decimals}, "
                f"authority={existing.mint_authority}; expected {decimals}, {authority.pubkey()}"
            )
        return existing
    rent = (await conn.get_minimum_balance_for_rent_exemption(spl.MINT_SIZE, Confirmed)).value
    create = create_account(
        CreateAccountParams(
            from_pubkey=payer.pubkey(),
            to_pubkey=mint.pubkey(),
            lamports=rent,
            space=spl.MINT_SIZE,
            owner=spl.TOKEN_PROGRAM_ID,
        )
    )
    init = spl.initialize_mint2(mint.pubkey(), decimals, authority.pubkey())
    await rpc.send_and_confirm(conn, [create, init], payer, [mint, authority])
    created = await rpc.get_mint(conn, mint.pubkey())
    if created is None:
        raise ValidatorError(f"mint {mint.pubkey()} missing after creation")
    return created


async def mint_tokens(
    conn: AsyncClient, mint: spl.MintInfo, authority: Keypair, owner: Pubkey, amount: int
) -> str:
    """Create ``owner``'s ATA if needed and MintToChecked ``amount`` base units into it."""
    ata = spl.associated_token_address(owner, mint.address, mint.token_program)
    ixs = [
        spl.create_ata_idempotent(authority.pubkey(), owner, mint.address, mint.token_program),
        spl.mint_to_checked(
            mint.address, ata, authority.pubkey(), amount, mint.decimals, mint.token_program
        ),
    ]
    return str(await rpc.send_and_confirm(conn, ixs, authority))


async def setup_sandbox(
    conn: AsyncClient, data_dir: Path, decimals: int, fund_wallets: Sequence[str]
) -> Pubkey:
    """Create the KZTE mint (idempotent) and give each wallet in ``fund_wallets`` SOL."""
    wallets = [parse_pubkey(w, "wallet to fund") for w in fund_wallets]
    mint_kp = load_or_create_keypair(mint_keypair_path(data_dir))
    faucet_kp = load_or_create_keypair(faucet_keypair_path(data_dir))
    await ensure_faucet_funded(conn, faucet_kp)
    await ensure_mint(conn, mint_kp, faucet_kp, decimals, faucet_kp)
    for wallet in wallets:
        have = await rpc.sol_balance(conn, wallet)
        await rpc.give_sol(conn, wallet, MERCHANT_SOL_LAMPORTS - have, faucet_kp)
    return mint_kp.pubkey()


async def _faucet(
    rpc_url: str, data_dir: Path, wallet: str, kzte_base_units: int, sol_lamports: int
) -> str:
    owner = parse_pubkey(wallet, "wallet")
    mint_kp = load_or_create_keypair(mint_keypair_path(data_dir))
    faucet_kp = load_or_create_keypair(faucet_keypair_path(data_dir))
    async with rpc.client(rpc_url) as conn:
        await ensure_faucet_funded(conn, faucet_kp)
        last = ""
        sig = await rpc.give_sol(conn, owner, sol_lamports, faucet_kp)
        if sig is not None:
            last = str(sig)
        if kzte_base_units > 0:
            mint = await rpc.get_mint(conn, mint_kp.pubkey())
            if mint is None:
                raise ValidatorError(
                    f"KZTE mint {mint_kp.pubkey()} is not on {rpc_url}: start the sandbox first"
                )
            last = await mint_tokens(conn, mint, faucet_kp, owner, kzte_base_units)
        return last


def faucet(
    rpc_url: str, data_dir: Path, wallet: str, kzte_base_units: int, sol_lamports: int
) -> str:
    """Give ``wallet`` sandbox KZTE and SOL; returns the last transaction signature.

    Mints ``kzte_base_units`` raw KZTE into the wallet's associated token account
    (created when missing) and airdrops -- or, where airdrops are refused,
    transfers from the faucet keypair -- ``sol_lamports``. Returns "" when both
    amounts are zero.
    """
    if kzte_base_units < 0 or sol_lamports < 0:
        raise SolanaSandboxError("faucet amounts must be non-negative")
    return rpc.run_sync(_faucet(rpc_url, Path(data_dir), wallet, kzte_base_units, sol_lamports))
