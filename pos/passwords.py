"""Password hashing with scrypt (stdlib), in a self-describing format.

`scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`: the parameters travel with the hash, so they can be
raised later without breaking existing accounts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sys
import threading

_N, _R, _P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD_LENGTH = 12
# Each scrypt takes 128 * r * n bytes = 32 MiB: without a bound, 40 parallel logins grow a web
# process by more than a gigabyte. Beyond this many at once, a request waits for a slot.
MAX_CONCURRENT_HASHES = 4
_HASH_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    """scrypt (about 0.1 s of CPU by design), at most MAX_CONCURRENT_HASHES at once. In a gevent
    web worker it runs on the hub's pool of real threads (hashlib releases the GIL): inline it
    would stall every other request and live page of that worker for as long. (Imported after
    gevent's patching, the semaphore is a gevent one there.)"""
    with _HASH_SLOTS:
        monkey = sys.modules.get("gevent.monkey")  # never imported here: only if already in use
        if monkey is not None and monkey.is_module_patched("threading"):
            import gevent

            options = {"salt": salt, "n": n, "r": r, "p": p, "maxmem": _MAXMEM}
            digest: bytes = gevent.get_hub().threadpool.apply(hashlib.scrypt, (password,), options)
            return digest
        return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password.encode(), salt, _N, _R, _P)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        digest = _scrypt(password.encode(), salt, int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(digest, expected)


# Computed once so a login for an unknown e-mail costs as much as a wrong password.
_DUMMY_HASH: str | None = None


def burn_time(password: str) -> None:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password("not-a-real-password")
    verify_password(_DUMMY_HASH, password)
