"""Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits) and recovery codes.

What every authenticator app (Google Authenticator, Aegis, 1Password …) speaks. A code is
accepted one step early or late (clock drift), and never twice: the caller stores the step
returned by `verify` and passes it back as `last_step`.

The secret is stored in clear in `users.totp_secret`: whoever can read the database can also
replace a password hash, so encrypting it with a key kept beside the database (SECRET_KEY)
would add little; database backups must be protected for that reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
ISSUER = "CryptoCity Pay"


def new_secret() -> str:
    """160 random bits in base32 (RFC 4226 recommends at least 128)."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _key(secret: str) -> bytes:
    padded = secret.upper() + "=" * (-len(secret) % 8)
    return base64.b32decode(padded)


def step_at(at: float) -> int:
    return int(at // STEP_SECONDS)


def code_for_step(secret: str, step: int) -> str:
    """RFC 4226 HOTP of counter `step` (dynamic truncation, 6 digits)."""
    digest = hmac.new(_key(secret), struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**DIGITS).zfill(DIGITS)


def code_at(secret: str, at: float | None = None) -> str:
    return code_for_step(secret, step_at(time.time() if at is None else at))


def verify(secret: str, code: str, last_step: int | None, at: float | None = None) -> int | None:
    """The step `code` belongs to (within ±1 step of `at`), or None: wrong, malformed, or a
    step at or before `last_step` (a code already used, or an older one)."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    now_step = step_at(time.time() if at is None else at)
    for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(code_for_step(secret, step), code):
            return step
    return None


def provisioning_uri(secret: str, account: str) -> str:
    """The otpauth:// URI an authenticator app scans from the QR code."""
    label = quote(f"{ISSUER}:{account}")
    query = urlencode({"secret": secret, "issuer": ISSUER, "digits": DIGITS, "period": 30})
    return f"otpauth://totp/{label}?{query}"


def new_recovery_codes() -> list[str]:
    """Ten codes of 10 base32 characters (50 bits) as `xxxxx-xxxxx`, shown to the user once."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()[:10]
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def normalize_recovery_code(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


def hash_recovery_code(code: str) -> str:
    # A plain SHA-256 suffices: the codes are 50 random bits, not guessable words, and the
    # sign-in limiter stops online guessing.
    return hashlib.sha256(normalize_recovery_code(code).encode()).hexdigest()


def looks_like_totp(code: str) -> bool:
    cleaned = code.strip().replace(" ", "")
    return len(cleaned) == DIGITS and cleaned.isdigit()
