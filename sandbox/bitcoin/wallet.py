"""Shopper wallet: pays BIP21 URIs over plain JSON-RPC (works with a real regtest bitcoind).

State (one P2WPKH key, scanned coins, last payment) lives in ``wallet_dir/wallet.json``.
Only standard node RPCs are used: getblockcount, getblockhash, getblock, gettxout,
generatetoaddress and sendrawtransaction.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxInWitness, CTxOut, CTxWitness, lx
from bitcoin.core.script import CScript, CScriptWitness

from .errors import (
    BadAmountError,
    InsufficientFundsError,
    InvalidURIError,
    NodeRPCError,
    WrongNetworkError,
)
from .keys import p2wpkh_script, pubkey_of, sign_p2wpkh
from .scripts import address_to_script, classify

COIN = 100_000_000
FEE_RATE = 2  # sat/vB
DUST = 294  # P2WPKH dust limit at Core's default dust relay fee
RBF_SEQUENCE = 0xFFFFFFFD
_AMOUNT_RE = re.compile(r"^(\d+)(\.\d{0,8})?$|^\.\d{1,8}$")


@dataclass(frozen=True)
class PaymentRequest:
    """A parsed BIP21 URI."""

    address: str
    script: bytes
    amount: int  # satoshis
    label: str | None = None
    message: str | None = None


def parse_bip21(uri: str) -> PaymentRequest:
    """Parse ``bitcoin:<addr>?amount=<BTC>&label=..&message=..`` for regtest."""
    if not isinstance(uri, str) or not uri[:8].lower() == "bitcoin:":
        raise InvalidURIError(f"not a bitcoin: URI: {uri!r}")
    rest = uri[8:]
    addr_part, _, query = rest.partition("?")
    address = unquote(addr_part).strip()
    if not address:
        raise InvalidURIError("URI has no address")
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in params:
            raise InvalidURIError(f"duplicate parameter {key!r}")
        if key.startswith("req-"):
            raise InvalidURIError(f"unsupported required parameter {key!r}")
        params[key] = value
    script = _address_script(address)
    if "amount" not in params:
        raise BadAmountError("URI has no amount")
    return PaymentRequest(
        address, script, parse_btc(params["amount"]), params.get("label"), params.get("message")
    )


def parse_btc(text: str) -> int:
    """A BIP21 decimal BTC amount -> satoshis (positive, at most 8 decimals, <= 21M)."""
    if not _AMOUNT_RE.match(text or ""):
        raise BadAmountError(f"bad amount {text!r}")
    sats = int(Decimal(text) * COIN)
    if sats <= 0 or sats > 21_000_000 * COIN:
        raise BadAmountError(f"amount out of range: {text}")
    return sats


def _address_script(address: str) -> bytes:
    low = address.lower()
    for hrp in ("bc1", "tb1"):
        if low.startswith(hrp):
            raise WrongNetworkError(f"{address} is not a regtest address (bcrt1...)")
    try:
        return address_to_script(address)
    except ValueError as exc:
        if "another network" in str(exc):
            raise WrongNetworkError(f"{address} is not a regtest address") from None
        raise InvalidURIError(f"invalid address {address!r}") from None


class RPC:
    """Minimal JSON-RPC 1.0 client (urllib), credentials taken from the URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.endpoint = f"{parts.scheme}://{parts.hostname}:{parts.port}{parts.path or '/'}"
        cred = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        self.auth = "Basic " + base64.b64encode(cred.encode()).decode()
        self._id = 0

    def __call__(self, method: str, *params: Any) -> Any:
        self._id += 1
        body = json.dumps(
            {"jsonrpc": "1.0", "id": self._id, "method": method, "params": list(params)}
        ).encode()
        req = urllib.request.Request(
            self.endpoint,
            data=body,
            headers={"Authorization": self.auth, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                reply = json.loads(resp.read(), parse_float=Decimal)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            exc.close()
            try:
                reply = json.loads(raw, parse_float=Decimal)
            except ValueError:
                raise NodeRPCError(f"{method}: HTTP {exc.code}") from None
        if reply.get("error"):
            err = reply["error"]
            raise NodeRPCError(f"{method}: {err.get('message')}", err.get("code"))
        return reply["result"]


def _sats(value: Any) -> int:
    return int((Decimal(str(value)) * COIN).to_integral_value())


class ShopperWallet:
    """One-key P2WPKH wallet whose coins are found by scanning blocks."""

    def __init__(self, wallet_dir: Path, rpc: RPC) -> None:
        self.path = Path(wallet_dir) / "wallet.json"
        self.rpc = rpc
        if self.path.exists():
            self.data: dict[str, Any] = json.loads(self.path.read_text())
        else:
            self.data = {
                "secret": os.urandom(32).hex(),
                "height": -1,
                "tip": None,
                "coins": {},
                "last_payment": None,
            }
        self.secret = bytes.fromhex(self.data["secret"])
        self.spk = p2wpkh_script(pubkey_of(self.secret))
        self.address = classify(self.spk)[1] or ""

    def save(self) -> None:
        """Write wallet.json atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)

    def refresh(self) -> None:
        """Scan blocks since the last seen height (rescan from 0 after a reorg)."""
        tip = int(self.rpc("getblockcount"))
        h = self.data["height"]
        if h >= 0 and (h > tip or self.rpc("getblockhash", h) != self.data["tip"]):
            self.data.update(height=-1, tip=None)  # reorged away: rebuild from scratch
            self.data["coins"] = {k: v for k, v in self.data["coins"].items() if v["local"]}
        coins = self.data["coins"]
        for height in range(self.data["height"] + 1, tip + 1):
            block = self.rpc("getblock", self.rpc("getblockhash", height), 2)
            for tx in block["tx"]:
                for n, out in enumerate(tx["vout"]):
                    if out["scriptPubKey"]["hex"] == self.spk.hex():
                        coins[f"{tx['txid']}:{n}"] = {"value": _sats(out["value"]), "local": False}
            self.data.update(height=height, tip=block["hash"])
        self.save()

    def spendable(self) -> tuple[list[tuple[str, int, int]], list[tuple[int, int]]]:
        """(spendable [(txid, vout, sats)], immature coinbases [(height, sats)]) via gettxout."""
        ready: list[tuple[str, int, int, int]] = []
        immature: list[tuple[int, int]] = []
        tip = self.data["height"]
        for key in list(self.data["coins"]):
            txid, vout = key.split(":")
            info = self.rpc("gettxout", txid, int(vout), True)
            if info is None:
                del self.data["coins"][key]  # spent (maybe by our own mempool tx) or gone
                continue
            confs = int(info["confirmations"])
            if info["coinbase"] and confs < 100:
                immature.append((tip - confs + 1, _sats(info["value"])))
                continue
            ready.append((txid, int(vout), _sats(info["value"]), 0 if confs else 1))
        self.save()
        ready.sort(key=lambda c: (c[3], -c[2]))  # confirmed first, biggest first
        return [(t, v, s) for t, v, s, _u in ready], sorted(immature)

    def coins_for(self, needed: int) -> list[tuple[str, int, int]]:
        """Spendable coins covering ``needed`` sats, mining to ourselves when short."""
        for _attempt in range(6):
            self.refresh()
            ready, immature = self.spendable()
            chosen, total = [], 0
            for coin in ready:
                chosen.append(coin)
                total += coin[2]
                if total >= needed:
                    return chosen
            blocks = 101  # a fresh coinbase needs 100 confirmations to be spendable
            for height, value in immature:
                total += value
                if total >= needed:
                    # Mine just enough blocks for the oldest immature coinbases to mature.
                    blocks = max(1, height + 99 - self.data["height"])
                    break
            self.rpc("generatetoaddress", blocks, self.address)
        raise InsufficientFundsError(f"could not gather {needed} sats")

    def build(
        self, coins: list[tuple[str, int, int]], outputs: list[tuple[bytes, int]], fee: int
    ) -> CTransaction:
        """Sign a tx spending ``coins`` to ``outputs`` (+ change when above dust)."""
        change = sum(c[2] for c in coins) - sum(v for _s, v in outputs) - fee
        if change < 0:
            raise InsufficientFundsError("coins do not cover amount + fee")
        vout = [CTxOut(v, CScript(s)) for s, v in outputs]
        if change >= DUST:
            vout.append(CTxOut(change, CScript(self.spk)))
        vin = [CTxIn(COutPoint(lx(t), n), CScript(), RBF_SEQUENCE) for t, n, _v in coins]
        unsigned = CTransaction(vin, vout, nLockTime=max(self.data["height"], 0), nVersion=2)
        wit = [
            CTxInWitness(CScriptWitness(sign_p2wpkh(unsigned, i, self.secret, c[2])))
            for i, c in enumerate(coins)
        ]
        return CTransaction(
            vin, vout, nLockTime=unsigned.nLockTime, nVersion=2, witness=CTxWitness(wit)
        )

    def send(
        self, coins: list[tuple[str, int, int]], outputs: list[tuple[bytes, int]], min_fee: int = 0
    ) -> tuple[str, CTransaction, int]:
        """Build at ~2 sat/vB (at least ``min_fee``), broadcast, remember change."""
        draft = self.build(coins, outputs, 0)
        vsize = (draft.calc_weight() + 3) // 4 + 1  # +1: signatures may grow a byte
        fee = max(FEE_RATE * vsize, min_fee)
        tx = self.build(coins, outputs, fee)
        txid = self.rpc("sendrawtransaction", tx.serialize().hex())
        for n, out in enumerate(tx.vout):
            if bytes(out.scriptPubKey) == self.spk:
                self.data["coins"][f"{txid}:{n}"] = {"value": out.nValue, "local": True}
        for c in coins:
            self.data["coins"].pop(f"{c[0]}:{c[1]}", None)
        self.save()
        return txid, tx, fee


def pay_uri(
    uri: str,
    *,
    rpc_url: str,
    wallet_dir: Path,
    amount_factor: Decimal = Decimal(1),
    times: int = 1,
    double_spend_to: str | None = None,
) -> list[str]:
    """Pay a BIP21 URI ``times`` times; optionally double-spend the last payment.

    Returns the txids broadcast, in order (the double spend's txid comes last).
    """
    req = parse_bip21(uri)
    try:
        amount = int((Decimal(req.amount) * Decimal(amount_factor)).to_integral_value(ROUND_DOWN))
    except (InvalidOperation, TypeError):
        raise BadAmountError(f"bad amount factor {amount_factor!r}") from None
    if amount < DUST:
        raise BadAmountError(f"amount {amount} sats is below the dust limit")
    if times < 1:
        raise BadAmountError("times must be at least 1")
    ds_script = _address_script(double_spend_to) if double_spend_to else None
    wallet = ShopperWallet(wallet_dir, RPC(rpc_url))
    txids: list[str] = []
    last: tuple[list[tuple[str, int, int]], int, int] | None = None
    for _ in range(times):
        coins = wallet.coins_for(amount + 1000 * FEE_RATE)
        txid, tx, fee = wallet.send(coins, [(req.script, amount)])
        txids.append(txid)
        last = (coins, fee, (tx.calc_weight() + 3) // 4)
    if ds_script is not None and last is not None:
        coins, old_fee, vsize = last
        # Full RBF: more absolute fee (+ relay increment) and a higher feerate.
        new_fee = old_fee + max(old_fee, 2 * vsize)
        total = sum(c[2] for c in coins)
        pay = min(amount, total - new_fee)
        if pay < DUST:
            raise InsufficientFundsError("inputs too small for a fee-bumped double spend")
        txid, _tx, _fee = wallet.send(coins, [(ds_script, pay)], min_fee=new_fee)
        txids.append(txid)
    wallet.data["last_payment"] = {"txids": txids, "uri": uri}
    wallet.save()
    return txids
