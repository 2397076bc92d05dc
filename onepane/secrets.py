"""Encryption of provider credentials at rest (Fernet), and hashing of API tokens."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from .errors import OnepaneError


def load_key(state_dir: Path) -> bytes:
    """ONEPANE_SECRET_KEY wins; otherwise a key file made once, readable by its owner only."""
    if env := os.environ.get("ONEPANE_SECRET_KEY"):
        return env.encode()
    path = state_dir / "secret.key"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key())
    return path.read_bytes().strip()


class Vault:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, credentials: dict[str, str]) -> bytes | None:
        return self._fernet.encrypt(json.dumps(credentials).encode()) if credentials else None

    def open(self, blob: bytes | None) -> dict[str, str]:
        if not blob:
            return {}
        try:
            return dict(json.loads(self._fernet.decrypt(blob)))
        except InvalidToken as exc:
            raise OnepaneError("stored credentials cannot be decrypted: wrong ONEPANE_SECRET_KEY?") from exc


def new_token() -> str:
    return "op_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough; a slow KDF protects low-entropy secrets.
    return hashlib.sha256(token.encode()).hexdigest()
