"""Survey link tokens: pure functions, no I/O.

A link carries `secrets.token_urlsafe(32)` (43 URL-safe characters, 256 bits); the database keeps
only its SHA-256 hex digest, so a leaked database cannot be turned into working links.
"""

import hashlib
import re
import secrets

TOKEN_BYTES = 32
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def token_new() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def token_is_well_formed(token: str) -> bool:
    """Cheap shape check before any database lookup; tampered links fail it or the lookup."""
    return bool(_TOKEN_RE.match(token or ""))


def token_pair() -> tuple[str, str]:
    """A fresh token and its hash."""
    token = token_new()
    return token, token_hash(token)
