"""SSH key pairs kept by name: onepane makes one (and shows the private key once) or takes a
public key; an instance created with a key name gets the public key where its location can
hand it over (a file for processes, the guest's firmware config for VMs)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from ..errors import Conflict, InvalidInput, NotFound
from ..store.db import Store
from ..store.tables import KeyPairRow

MAX_NAME = 255


@dataclass(frozen=True)
class KeyPair:
    name: str
    fingerprint: str
    public_key: str
    key_type: str
    created_at: datetime


def _colons(digest: bytes) -> str:
    return ":".join(f"{b:02x}" for b in digest)


class KeyPairs:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, name: str) -> tuple[KeyPair, str]:
        """A new RSA key; returns it and the private key (PEM), which onepane does not keep.
        The fingerprint is EC2's for keys it makes: SHA-1 of the DER private key."""
        _check_name(name)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
        return self._add(name, _colons(hashlib.sha1(der).digest()), public, "rsa"), pem

    def import_public(self, name: str, material: str) -> KeyPair:
        """An OpenSSH public key (`ssh-rsa AAAA... comment`, ed25519 too). Fingerprint as EC2
        gives imported keys: MD5 of the DER public key."""
        _check_name(name)
        material = material.strip()
        if not material:
            raise InvalidInput("the public key is empty", field="public_key")
        try:
            key = serialization.load_ssh_public_key(material.encode())
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise InvalidInput(f"not an OpenSSH public key: {exc}", field="public_key") from exc
        der = key.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
        kind = "ed25519" if material.startswith("ssh-ed25519") else "rsa"
        openssh = key.public_bytes(serialization.Encoding.OpenSSH,
                                   serialization.PublicFormat.OpenSSH).decode()
        return self._add(name, _colons(hashlib.md5(der).digest()), openssh, kind)

    def find(self, names: list[str] | None = None) -> list[KeyPair]:
        with self.store.tx() as s:
            rows = [_view(r) for r in s.scalars(select(KeyPairRow).order_by(KeyPairRow.name))]
        if names:
            if missing := set(names) - {k.name for k in rows}:
                raise NotFound(f"the key pair {sorted(missing)[0]!r} does not exist",
                               field="key_name")
            rows = [k for k in rows if k.name in names]
        return rows

    def get(self, name: str) -> KeyPair:
        return self.find([name])[0]

    def delete(self, name: str) -> None:
        """Deleting a key that is not there succeeds (as EC2 does)."""
        with self.store.tx() as s:
            row = s.get(KeyPairRow, name)
            if row is not None:
                s.delete(row)

    def _add(self, name: str, fingerprint: str, public: str, kind: str) -> KeyPair:
        with self.store.tx() as s:
            if s.get(KeyPairRow, name) is not None:
                raise Conflict(f"the key pair {name!r} already exists", field="key_name")
            row = KeyPairRow(name=name, fingerprint=fingerprint, public_key=public, key_type=kind)
            s.add(row)
            s.flush()
            return _view(row)


def _check_name(name: str) -> None:
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise InvalidInput("a key name is 1-255 printable characters", field="key_name")


def _view(r: KeyPairRow) -> KeyPair:
    return KeyPair(r.name, r.fingerprint, r.public_key, r.key_type, r.created_at)


def decode_material(raw: str) -> str:
    """EC2 clients send PublicKeyMaterial base64-encoded (boto3 does); the aws CLI's
    `fileb://` too; some send the text itself."""
    text = raw.strip()
    if text.startswith(("ssh-", "ecdsa-")):
        return text
    try:
        return base64.b64decode(text, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return text
