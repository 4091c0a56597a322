"""A scriptable shopper wallet that pays Solana Pay transfer requests.

The transaction is built as the Solana Pay spec describes: optional ATA
CreateIdempotent for the recipient, then the Memo (second to last, no signers),
then the transfer (last) with the reference keys appended as read-only
non-signers. Drill flags let the demo pay too little, too much, twice, or with
the wrong token.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from pathlib import Path

from solana.rpc.async_api import AsyncClient
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer

from sandbox.solana import rpc, spl
from sandbox.solana.errors import (
    InsufficientFundsError,
    MalformedUriError,
    UnsupportedUriError,
    WalletError,
)
from sandbox.solana.keys import (
    faucet_keypair_path,
    load_keypair,
    load_or_create_keypair,
    mint_keypair_path,
)
from sandbox.solana.mint import LAMPORTS_PER_SOL, ensure_mint, mint_tokens
from sandbox.solana.uri import (
    SOL_DECIMALS,
    TransferRequest,
    amount_to_base_units,
    parse_transfer_uri,
)

# A fee plus rent for one recipient ATA, per payment, with headroom.
_SOL_PER_PAYMENT = 5_000 + 2_039_280
_SOL_MIN_EXTRA = 10_000_000
_SOL_TOP_UP = LAMPORTS_PER_SOL
# Faucet top-ups add this many whole tokens so later payments need no faucet.
_TOKEN_TOP_UP_UNITS = 1_000


def wallet_keypair(wallet_dir: Path) -> Keypair:
    """The shopper's keypair (``<wallet_dir>/wallet.json``), created on first use."""
    return load_or_create_keypair(Path(wallet_dir) / "wallet.json")


def _with_references(ix: Instruction, references: tuple[Pubkey, ...]) -> Instruction:
    metas = list(ix.accounts) + [
        AccountMeta(r, is_signer=False, is_writable=False) for r in references
    ]
    return Instruction(ix.program_id, ix.data, metas)


def _scaled(base_units: int, factor: Decimal) -> int:
    return int((Decimal(base_units) * factor).to_integral_value(rounding=ROUND_DOWN))


class _Payer:
    """One pay_uri call: the chain connection, the keys and the drill settings."""

    def __init__(
        self, conn: AsyncClient, keypair: Keypair, wallet_dir: Path, faucet_dir: Path | None
    ) -> None:
        self.conn = conn
        self.keypair = keypair
        self.owner = keypair.pubkey()
        self.wallet_dir = wallet_dir
        self.faucet_dir = faucet_dir

    async def ensure_sol(self, needed: int) -> None:
        have = await rpc.sol_balance(self.conn, self.owner)
        if have >= needed:
            return
        if self.faucet_dir is None:
            raise InsufficientFundsError(
                f"wallet {self.owner} has {have} lamports, needs {needed}; pass a faucet data dir"
            )
        faucet_path = faucet_keypair_path(self.faucet_dir)
        funder = load_keypair(faucet_path) if faucet_path.is_file() else None
        await rpc.give_sol(self.conn, self.owner, max(_SOL_TOP_UP, needed - have), funder)

    async def ensure_tokens(
        self, mint: spl.MintInfo, needed: int, authority: Keypair | None
    ) -> None:
        ata = spl.associated_token_address(self.owner, mint.address, mint.token_program)
        have = await rpc.token_balance(self.conn, ata)
        if have >= needed:
            return
        top_up = needed - have + _TOKEN_TOP_UP_UNITS * 10**mint.decimals
        faucet_dir = self.faucet_dir
        # The faucet can only mint the sandbox KZTE, not an arbitrary spl-token.
        if (
            authority is None
            and faucet_dir is not None
            and mint_keypair_path(faucet_dir).is_file()
            and load_keypair(mint_keypair_path(faucet_dir)).pubkey() == mint.address
        ):
            authority = load_or_create_keypair(faucet_keypair_path(faucet_dir))
        if authority is None:
            raise InsufficientFundsError(
                f"wallet {self.owner} holds {have} base units of {mint.address}, needs {needed}"
                + ("" if self.faucet_dir else "; pass a faucet data dir")
            )
        await mint_tokens(self.conn, mint, authority, self.owner, top_up)

    async def wrong_mint(self, decimals: int) -> spl.MintInfo:
        """A second mint with the same decimals, owned by this wallet (wrong-token drill)."""
        mint_kp = load_or_create_keypair(self.wallet_dir / f"wrong-mint-{decimals}.json")
        return await ensure_mint(self.conn, mint_kp, self.keypair, decimals, self.keypair)

    async def token_instructions(
        self, req: TransferRequest, mint: spl.MintInfo, amount: int
    ) -> list[Instruction]:
        program = mint.token_program
        recipient_ata = spl.associated_token_address(req.recipient, mint.address, program)
        ixs: list[Instruction] = []
        if (await self.conn.get_account_info(recipient_ata)).value is None:
            ixs.append(spl.create_ata_idempotent(self.owner, req.recipient, mint.address, program))
        if req.memo is not None:
            ixs.append(spl.memo(req.memo))
        source = spl.associated_token_address(self.owner, mint.address, program)
        ixs.append(
            spl.transfer_checked(
                source,
                mint.address,
                recipient_ata,
                self.owner,
                amount,
                mint.decimals,
                req.references,
                program,
            )
        )
        return ixs

    def sol_instructions(self, req: TransferRequest, lamports: int) -> list[Instruction]:
        ixs = [spl.memo(req.memo)] if req.memo is not None else []
        ix = transfer(
            TransferParams(from_pubkey=self.owner, to_pubkey=req.recipient, lamports=lamports)
        )
        ixs.append(_with_references(ix, req.references))
        return ixs

    async def recipient_is_token_account(self, recipient: Pubkey) -> bool:
        account = (await self.conn.get_account_info(recipient)).value
        return account is not None and account.owner in spl.TOKEN_PROGRAMS


async def _pay(
    req: TransferRequest,
    rpc_url: str,
    wallet_dir: Path,
    amount_factor: Decimal,
    times: int,
    wrong_mint: bool,
    faucet_dir: Path | None,
) -> list[str]:
    assert req.amount is not None
    keypair = wallet_keypair(wallet_dir)
    async with rpc.client(rpc_url) as conn:
        payer = _Payer(conn, keypair, wallet_dir, faucet_dir)
        if await payer.recipient_is_token_account(req.recipient):
            raise MalformedUriError(
                f"recipient {req.recipient} is a token account; Solana Pay needs the owner's wallet"
            )
        mint: spl.MintInfo | None = None
        if req.spl_token is not None:
            mint = await rpc.get_mint(conn, req.spl_token)
            if mint is None:
                raise WalletError(f"spl-token mint {req.spl_token} does not exist on {rpc_url}")
        elif wrong_mint:
            raise UnsupportedUriError("the wrong-mint drill needs an spl-token URI")
        decimals = mint.decimals if mint is not None else SOL_DECIMALS
        amount = _scaled(amount_to_base_units(req.amount, decimals), amount_factor)

        authority: Keypair | None = None
        if mint is not None and wrong_mint:
            mint, authority = await payer.wrong_mint(mint.decimals), keypair
        sol_needed = times * _SOL_PER_PAYMENT + _SOL_MIN_EXTRA
        if mint is None:
            sol_needed += times * amount
        await payer.ensure_sol(sol_needed)
        if mint is not None:
            await payer.ensure_tokens(mint, times * amount, authority)

        signatures: list[str] = []
        blockhash: Hash | None = None
        for _ in range(times):
            if mint is not None:
                ixs = await payer.token_instructions(req, mint, amount)
            else:
                ixs = payer.sol_instructions(req, amount)
            # A fresh blockhash per payment keeps repeated payments distinct.
            blockhash = await rpc.latest_blockhash(conn, not_equal=blockhash)
            sig = await rpc.send(conn, ixs, keypair, blockhash=blockhash)
            await rpc.wait_confirmed(conn, [sig])
            signatures.append(str(sig))
        return signatures


def pay_uri(
    uri: str,
    *,
    rpc_url: str,
    wallet_dir: Path,
    amount_factor: Decimal = Decimal(1),
    times: int = 1,
    wrong_mint: bool = False,
    faucet_data_dir: Path | None = None,
) -> list[str]:
    """Pay a Solana Pay transfer-request URI and return the confirmed signatures.

    The wallet's keypair lives in ``wallet_dir``; when its SOL or token balance is
    short and ``faucet_data_dir`` (the validator's data dir) is given, it is
    topped up from the sandbox faucet. Drills: ``amount_factor`` scales the
    amount (rounded down to whole base units), ``times`` pays repeatedly with
    separate transactions, ``wrong_mint`` pays the same amount of a second mint
    with the same decimals. Raises a WalletError subclass for malformed or
    unsupported URIs and missing funds, RpcError when the chain refuses.
    """
    if times < 1:
        raise WalletError(f"times must be at least 1, got {times}")
    factor = Decimal(str(amount_factor))  # tolerate int/float callers
    if not factor.is_finite() or factor < 0:
        raise WalletError(f"amount_factor must be a non-negative number, got {amount_factor}")
    req = parse_transfer_uri(uri)
    if req.amount is None:
        raise UnsupportedUriError("the URI has no amount and this wallet cannot prompt for one")
    faucet_dir = Path(faucet_data_dir) if faucet_data_dir is not None else None
    return rpc.run_sync(_pay(req, rpc_url, Path(wallet_dir), factor, times, wrong_mint, faucet_dir))
