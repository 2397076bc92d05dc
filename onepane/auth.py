"""API tokens: stored hashed, checked on every request, with a role each."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from .errors import Forbidden, NotFound, Unauthorized
from .model import new_id
from .secrets import hash_token, new_token
from .store.db import Store
from .store.tables import TokenRow

ROLES = ("admin", "operator", "viewer")


class Tokens:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, str] = {}  # hash -> role
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
        with self.store.tx() as s:
            row = s.get(TokenRow, token_id)
            if row is None:
                raise NotFound(f"no token {token_id!r}")
            s.delete(row)
        with self._lock:
            self._cache.clear()

    def role_of(self, token: str | None) -> str:
        if not token:
            raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
        digest = hash_token(token)
        with self._lock:
            if digest in self._cache:
                return self._cache[digest]
        with self.store.tx() as s:
            role = s.scalar(select(TokenRow.role).where(TokenRow.token_hash == digest))
        if role is None:
            raise Unauthorized("invalid token")
        with self._lock:
            self._cache[digest] = role
        return role

    def count(self) -> int:
        with self.store.tx() as s:
            return s.scalar(select(func.count()).select_from(TokenRow)) or 0
