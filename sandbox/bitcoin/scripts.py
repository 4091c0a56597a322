"""Script classification, addresses, ASM and descriptor checksums (regtest)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import bitcoin
from bitcoin import base58
from bitcoin.core import b2x
from bitcoin.core.script import OPCODE_NAMES, CScript, CScriptOp
from bitcoin.segwit_addr import decode as segwit_decode
from bitcoin.segwit_addr import encode as segwit_encode

bitcoin.SelectParams("regtest")

HRP = "bcrt"
P2PKH_VERSION = 111
P2SH_VERSION = 196

_INPUT_CHARSET = (
    "0123456789()[],'/*abcdefgh@:$%{}"
    "IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~"
    'ijklmnopqrstuvwxyzABCDEFGH`#"\\ '
)
_CHECKSUM_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0xF5DEE51989, 0xA9FDCA3312, 0x1BAB10E32D, 0x3706B1677A, 0x644D626FFD)


def _polymod(c: int, val: int) -> int:
    c0 = c >> 35
    c = ((c & 0x7FFFFFFFF) << 5) ^ val
    for i in range(5):
        if (c0 >> i) & 1:
            c ^= _GENERATOR[i]
    return c


def descriptor_checksum(desc: str) -> str:
    """BIP380 descriptor checksum (8 characters)."""
    c, cls, clscount = 1, 0, 0
    for ch in desc:
        pos = _INPUT_CHARSET.find(ch)
        if pos < 0:
            return ""
        c = _polymod(c, pos & 31)
        cls = cls * 3 + (pos >> 5)
        clscount += 1
        if clscount == 3:
            c = _polymod(c, cls)
            cls, clscount = 0, 0
    if clscount:
        c = _polymod(c, cls)
    for _ in range(8):
        c = _polymod(c, 0)
    c ^= 1
    return "".join(_CHECKSUM_CHARSET[(c >> (5 * (7 - j))) & 31] for j in range(8))


def classify(spk: bytes) -> tuple[str, str | None]:
    """Return Core's script ``type`` and the regtest address (or None)."""
    n = len(spk)
    if n >= 4 and spk[0] == 0x00 and spk[1] == n - 2 and n in (22, 34):
        kind = "witness_v0_keyhash" if n == 22 else "witness_v0_scripthash"
        return kind, segwit_encode(HRP, 0, spk[2:])
    if n == 34 and spk[0] == 0x51 and spk[1] == 32:
        return "witness_v1_taproot", segwit_encode(HRP, 1, spk[2:])
    if spk == b"\x51\x02\x4e\x73":
        return "anchor", segwit_encode(HRP, 1, spk[2:])
    if 4 <= n <= 42 and (spk[0] == 0 or 0x51 <= spk[0] <= 0x60) and spk[1] == n - 2 and n >= 4:
        version = 0 if spk[0] == 0 else spk[0] - 0x50
        return "witness_unknown", segwit_encode(HRP, version, spk[2:])
    if n == 25 and spk[:3] == b"\x76\xa9\x14" and spk[23:] == b"\x88\xac":
        return "pubkeyhash", base58.encode(_b58check(P2PKH_VERSION, spk[3:23]))
    if n == 23 and spk[:2] == b"\xa9\x14" and spk[22] == 0x87:
        return "scripthash", base58.encode(_b58check(P2SH_VERSION, spk[2:22]))
    if n >= 1 and spk[0] == 0x6A:
        return "nulldata", None
    if ((n == 35 and spk[0] == 33) or (n == 67 and spk[0] == 65)) and spk[-1] == 0xAC:
        return "pubkey", None
    return "nonstandard", None


def _b58check(version: int, payload: bytes) -> bytes:
    from bitcoin.core import Hash

    data = bytes([version]) + payload
    return data + bytes(Hash(data)[:4])


def address_to_script(addr: str) -> bytes:
    """Decode a regtest address; raises ValueError for anything else."""
    low = addr.lower()
    if low.startswith(HRP + "1"):
        version, program = segwit_decode(HRP, low)
        if version is None or program is None:
            raise ValueError("invalid bech32 address")
        op = 0 if version == 0 else 0x50 + version
        return bytes([op, len(program)]) + bytes(program)
    try:
        raw = base58.decode(addr)
    except Exception as exc:
        raise ValueError("invalid address") from exc
    from bitcoin.core import Hash

    if len(raw) != 25 or Hash(raw[:21])[:4] != raw[21:]:
        raise ValueError("invalid base58 address")
    if raw[0] == P2PKH_VERSION:
        return b"\x76\xa9\x14" + bytes(raw[1:21]) + b"\x88\xac"
    if raw[0] == P2SH_VERSION:
        return b"\xa9\x14" + bytes(raw[1:21]) + b"\x87"
    raise ValueError("address of another network")


def script_asm(spk: bytes) -> str:
    """Core's ScriptToAsmStr (no sighash decoding)."""
    out: list[str] = []
    try:
        for op, data, _idx in CScript(spk).raw_iter():
            if data is not None and op <= 0x4E:
                if len(data) <= 4 and op != 0:
                    out.append(str(_scriptnum(data)))
                else:
                    out.append(b2x(data) if data else "0")
            elif op == 0:
                out.append("0")
            elif 0x51 <= op <= 0x60:
                out.append(str(op - 0x50))
            elif op == 0x4F:
                out.append("-1")
            else:
                out.append(OPCODE_NAMES.get(CScriptOp(op), "OP_UNKNOWN"))
    except Exception:
        out.append("[error]")
    return " ".join(out)


def _scriptnum(data: bytes) -> int:
    if not data:
        return 0
    value = int.from_bytes(data, "little")
    if data[-1] & 0x80:
        return -(value & ~(0x80 << (8 * (len(data) - 1))))
    return value


@lru_cache(maxsize=65536)
def script_pubkey_json(spk: bytes) -> dict[str, Any]:
    """The ``scriptPubKey`` object of decoded outputs (cached: treat as read-only)."""
    kind, addr = classify(spk)
    desc = f"addr({addr})" if addr else f"raw({spk.hex()})"
    if kind == "pubkey":
        desc = f"pk({spk[1:-1].hex()})"
    result: dict[str, Any] = {
        "asm": script_asm(spk),
        "desc": f"{desc}#{descriptor_checksum(desc)}",
        "hex": spk.hex(),
    }
    if addr:
        result["address"] = addr
    result["type"] = kind
    return result
