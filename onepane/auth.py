"""API tokens and EC2 access keys: each carries one of the same three roles.

Tokens are stored hashed (a bearer token is compared, never recomputed). Access keys are stored
encrypted: a SigV4 signature can only be checked by recomputing it with the secret.
"""

from __future__ import annotations

import secrets
import threading
import time

from sqlalchemy import func, select

from .errors import Forbidden, NotFound, Unauthorized
from .model import new_id, utc_iso
from .secrets import Vault, hash_token, new_token
from .store.db import Store
from .store.tables import AccessKeyRow, TokenRow

ROLES = ("admin", "operator", "viewer")
# How long a node trusts what it read of a token or key. A revocation goes through one node's
# database write; the other nodes see it when their entry expires, so this is the bound on a
# revoked credential's life anywhere in the cluster (and the rate of credential reads: one
# per credential per second, however busy the API).
CACHE_TTL_S = 1.0


def _delete(store: Store, table: type[TokenRow | AccessKeyRow], key: str, what: str) -> None:
    with store.tx() as s:
        row = s.get(table, key)
        if row is None:
            raise NotFound(f"no {what} {key!r}")
        s.delete(row)


class Tokens:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, tuple[str, float]] = {}  # hash -> (role, read at)
        self._lock = threading.Lock()

    def create(self, name: str, role: str = "admin") -> tuple[str, str]:
        """Returns (token id, token). The token itself is shown once and never stored."""
        if role not in ROLES:
            raise Forbidden(f"unknown role {role!r}; use {', '.join(ROLES)}", field="role")
        token = new_token()
        tid = new_id("tok")
        with self.store.tx() as s:
            s.add(TokenRow(id=tid, name=name, token_hash=hash_token(token), role=role))
        return tid, token

    def revoke(self, token_id: str) -> None:
        _delete(self.store, TokenRow, token_id, "token")
        with self._lock:
            self._cache.clear()

    def list(self) -> list[dict[str, str]]:
        """Who holds a token and with which role; never the token or its hash."""
        with self.store.tx() as s:
            return [{"id": r.id, "name": r.name, "role": r.role, "created_at": utc_iso(r.created_at)}
                    for r in s.scalars(select(TokenRow).order_by(TokenRow.created_at))]

    def cached_role(self, token: str | None) -> str | None:
        """The token's role if this process has checked the token before; None otherwise."""
        return self._fresh(hash_token(token)) if token else None

    def _fresh(self, digest: str) -> str | None:
        with self._lock:
            hit = self._cache.get(digest)
        return hit[0] if hit is not None and time.monotonic() - hit[1] < CACHE_TTL_S else None

    def role_of(self, token: str | None) -> str:
        if not token:
            raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
        digest = hash_token(token)
        if (known := self._fresh(digest)) is not None:
            return known
        read_at = time.monotonic()
        with self.store.tx() as s:
            role = s.scalar(select(TokenRow.role).where(TokenRow.token_hash == digest))
        with self._lock:
            if role is None:
                self._cache.pop(digest, None)
                raise Unauthorized("invalid token")
            self._cache[digest] = (role, read_at)
        return role

    def identify(self, token: str) -> dict[str, str]:
        """Which token this is (its id, name and role), for "who am I"; never the token."""
        with self.store.tx() as s:
            row = s.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(token)))
            if row is None:
                raise Unauthorized("invalid token")
            return {"id": row.id, "name": row.name, "role": row.role}

    def count(self) -> int:
        with self.store.tx() as s:
            return s.scalar(select(func.count()).select_from(TokenRow)) or 0


class AccessKeys:
    """Key id + secret pairs for the EC2 query API (AWS Signature Version 4)."""

    def __init__(self, store: Store, vault: Vault) -> None:
        self.store = store
        self.vault = vault
        self._cache: dict[str, tuple[str, str, float]] = {}  # key id -> (secret, role, read at)
        self._lock = threading.Lock()

    def create(self, name: str, role: str = "operator") -> tuple[str, str]:
        """Returns (access key id, secret). The secret is shown once."""
        if role not in ROLES:
            raise Forbidden(f"unknown role {role!r}; use {', '.join(ROLES)}", field="role")
        # AWS key ids are 20 upper-case characters; tools such as the aws CLI expect that shape.
        key_id = "AKOP" + secrets.token_hex(8).upper()
        secret = secrets.token_urlsafe(30)
        with self.store.tx() as s:
            s.add(AccessKeyRow(id=key_id, name=name, role=role,
                               secret_enc=self.vault.seal({"secret": secret})))
        return key_id, secret

    def revoke(self, key_id: str) -> None:
        _delete(self.store, AccessKeyRow, key_id, "access key")
        with self._lock:
            self._cache.pop(key_id, None)

    def list(self) -> list[dict[str, str]]:
        with self.store.tx() as s:
            return [{"access_key_id": r.id, "name": r.name, "role": r.role,
                     "created_at": utc_iso(r.created_at)}
                    for r in s.scalars(select(AccessKeyRow).order_by(AccessKeyRow.created_at))]

    def secret_and_role(self, key_id: str) -> tuple[str, str] | None:
        with self._lock:
            hit = self._cache.get(key_id)
        if hit is not None and time.monotonic() - hit[2] < CACHE_TTL_S:
            return hit[0], hit[1]
        read_at = time.monotonic()
        with self.store.tx() as s:
            row = s.get(AccessKeyRow, key_id)
            found = (self.vault.open(row.secret_enc)["secret"], row.role) if row else None
        with self._lock:
            if found is None:
                self._cache.pop(key_id, None)
                return None
            self._cache[key_id] = (*found, read_at)
        return found
