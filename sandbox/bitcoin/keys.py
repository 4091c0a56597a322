"""Keys and witness v0 P2WPKH signing/verification (BIP143).

Sighashes come from python-bitcoinlib; the ECDSA maths uses embit's bundled
libsecp256k1 binding because it is ~10x faster than the OpenSSL path.
"""

from __future__ import annotations

import hashlib

from bitcoin.core import CTransaction
from bitcoin.core.script import SIGVERSION_WITNESS_V0, CScript, SignatureHash
from embit import ec


def hash160(data: bytes) -> bytes:
    """RIPEMD160(SHA256(data))."""
    sha = hashlib.sha256(data).digest()
    try:
        return hashlib.new("ripemd160", sha).digest()
    except ValueError:  # OpenSSL 3 without legacy provider
        from embit.util.py_ripemd160 import ripemd160

        return bytes(ripemd160(sha))


def pubkey_of(secret: bytes) -> bytes:
    """Compressed public key (33 bytes) of a 32-byte secret."""
    return bytes(ec.PrivateKey(secret).get_public_key().sec())


def p2wpkh_script(pubkey: bytes) -> bytes:
    """scriptPubKey ``0 <hash160(pubkey)>``."""
    return b"\x00\x14" + hash160(pubkey)


def _script_code(pkh: bytes) -> CScript:
    # BIP143: the scriptCode of P2WPKH is the classic P2PKH script.
    return CScript(b"\x76\xa9\x14" + pkh + b"\x88\xac")


def sighash_p2wpkh(tx: CTransaction, index: int, pkh: bytes, amount: int, hashtype: int) -> bytes:
    """BIP143 signature hash of input ``index`` spending ``amount`` sats."""
    return bytes(
        SignatureHash(_script_code(pkh), tx, index, hashtype, amount, SIGVERSION_WITNESS_V0)
    )


def sign_p2wpkh(tx: CTransaction, index: int, secret: bytes, amount: int) -> list[bytes]:
    """Return the witness stack ``[sig||SIGHASH_ALL, pubkey]`` for one input."""
    pub = pubkey_of(secret)
    digest = sighash_p2wpkh(tx, index, hash160(pub), amount, 1)
    sig = ec.PrivateKey(secret).sign(digest).serialize()
    return [bytes(sig) + b"\x01", pub]


def verify_p2wpkh(tx: CTransaction, index: int, pkh: bytes, amount: int) -> bool:
    """Check the witness of input ``index`` against the P2WPKH program ``pkh``."""
    wit = tx.wit.vtxinwit[index].scriptWitness.stack if index < len(tx.wit.vtxinwit) else []
    if len(wit) != 2 or len(tx.vin[index].scriptSig) != 0:
        return False
    sig, pub = bytes(wit[0]), bytes(wit[1])
    if len(pub) != 33 or hash160(pub) != pkh or len(sig) < 9:
        return False
    try:
        digest = sighash_p2wpkh(tx, index, pkh, amount, sig[-1])
        return bool(ec.PublicKey.parse(pub).verify(ec.Signature.parse(sig[:-1]), digest))
    except Exception:
        return False
