"""Issuer keys: the Ed25519 keys grants are signed with.

Kept as PKCS#8 PEM files (mode 0600) in `<data dir>/keys/`, one per key, named by key id.
The newest signs; all are published to hubs, so a new key can be rolled out before it is
used and an old one kept until the grants it signed have expired.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.protocol.grants import GrantSigner, key_id_for, public_key_bytes


@dataclass(frozen=True)
class IssuerKeys:
    signer: GrantSigner
    public: dict[str, bytes]  # kid -> raw Ed25519 public key, every key hubs should trust


def load_or_create(directory: Path) -> IssuerKeys:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = sorted(directory.glob("issuer-*.pem"), key=lambda p: p.stat().st_mtime)
    if not files:
        files = [_create(directory)]
    keys = [_load(path) for path in files]
    public = {key_id_for(k.public_key()): public_key_bytes(k.public_key()) for k in keys}
    return IssuerKeys(signer=GrantSigner(keys[-1]), public=public)


def _create(directory: Path) -> Path:
    key = Ed25519PrivateKey.generate()
    path = directory / f"issuer-{key_id_for(key.public_key())}.pem"
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return path


def _load(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 key")
    return key
