"""What a hub keeps in its data directory after enrollment.

<data dir>/hub.json      hub id, broker address and credentials (and whether over TLS,
                         with the broker's CA if the service gave one), the issuer keys
                         given at enrollment, access points (mode 0600: it holds the
                         broker password); one written before TLS existed reads as plain
<data dir>/issuer_keys.json  the issuer keys the hub trusts since it applied a desired
                         document that named them (`protocol.shadow`); trusted in place
                         of hub.json's from then on, across restarts
<data dir>/hub.key       the hub's Ed25519 key; events are signed with it
<data dir>/seal.key      the hub's X25519 key, raw 32 bytes (mode 0600); the service seals
                         keypad PINs to its public half (`protocol.seal`), sent at enrollment
<data dir>/journal.db    the durable journal (see journal.py)
<data dir>/credentials.db  the applied desired document and where each keypad code lives
                         (see credential_store.py); never a PIN
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from doorstep.protocol import seal
from doorstep.protocol.grants import public_key_bytes
from doorstep.protocol.messages import b64decode, b64encode
from doorstep.protocol.mqtt import BrokerAddress

TRUSTED_KEYS_FILE = "issuer_keys.json"


class EnrollmentError(Exception):
    pass


@dataclass(frozen=True)
class HubConfig:
    hub_id: str
    home_id: str
    broker: BrokerAddress
    issuer_keys: dict[str, bytes]
    access_points: tuple[str, ...]

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "hub_id": self.hub_id,
                "home_id": self.home_id,
                "broker": {
                    "host": self.broker.host,
                    "port": self.broker.port,
                    "username": self.broker.username,
                    "password": self.broker.password,
                    "tls": self.broker.tls,
                    "ca_pem": self.broker.ca_pem,
                },
                "issuer_keys": {kid: b64encode(raw) for kid, raw in self.issuer_keys.items()},
                "access_points": list(self.access_points),
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_enrollment(cls, body: dict[str, object]) -> HubConfig:
        broker = body["broker"]
        keys = body["issuer_keys"]
        points = body["access_points"]
        if not (isinstance(broker, dict) and isinstance(keys, dict) and isinstance(points, list)):
            raise EnrollmentError("enrollment answer is malformed")
        return cls(
            hub_id=str(body["hub_id"]),
            home_id=str(body["home_id"]),
            broker=_broker_address(broker),
            issuer_keys={str(kid): b64decode(str(raw)) for kid, raw in keys.items()},
            access_points=tuple(str(p) for p in points),
        )


def _broker_address(broker: dict[str, object]) -> BrokerAddress:
    tls = broker.get("tls", False)  # absent: enrolled before TLS, plain
    ca_pem = broker.get("ca_pem")
    if not isinstance(tls, bool) or not (ca_pem is None or isinstance(ca_pem, str)):
        raise EnrollmentError("enrollment answer is malformed: broker tls or ca_pem")
    try:
        return BrokerAddress(
            str(broker["host"]),
            int(str(broker["port"])),
            str(broker["username"]),
            str(broker["password"]),
            tls=tls,
            ca_pem=ca_pem,
        )
    except ValueError as exc:
        raise EnrollmentError(f"enrollment answer names an unusable broker: {exc}") from exc


def load(data_dir: Path) -> HubConfig | None:
    path = data_dir / "hub.json"
    if not path.exists():
        return None
    return HubConfig.from_enrollment(orjson.loads(path.read_bytes()))


def trusted_issuer_keys(data_dir: Path, config: HubConfig) -> dict[str, bytes]:
    """The issuer keys the hub trusts: those last saved (`save_issuer_keys`) for this hub
    id, else the ones given at enrollment."""
    path = data_dir / TRUSTED_KEYS_FILE
    if not path.exists():
        return dict(config.issuer_keys)
    try:
        body = orjson.loads(path.read_bytes())
        if body["hub_id"] != config.hub_id:  # left by an earlier enrollment
            return dict(config.issuer_keys)
        keys = {str(kid): b64decode(str(raw)) for kid, raw in body["issuer_keys"].items()}
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise EnrollmentError(f"{path} is unreadable: {exc}") from exc
    if not keys:
        raise EnrollmentError(f"{path} names no issuer key")
    return keys


def save_issuer_keys(data_dir: Path, hub_id: str, keys: Mapping[str, bytes]) -> None:
    """Trust `keys` from now on, durably: written whole, or not at all."""
    body = {"hub_id": hub_id, "issuer_keys": {kid: b64encode(raw) for kid, raw in keys.items()}}
    _write_private(data_dir / TRUSTED_KEYS_FILE, orjson.dumps(body, option=orjson.OPT_INDENT_2))


def signing_key(data_dir: Path) -> Ed25519PrivateKey:
    """The hub's own key, created on first use."""
    path = data_dir / "hub.key"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise EnrollmentError(f"{path} is not an Ed25519 key")
        return key
    key = Ed25519PrivateKey.generate()
    _write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return key


def seal_key(data_dir: Path) -> X25519PrivateKey:
    """The key keypad PINs are sealed to (`protocol.seal`), created on first use."""
    path = data_dir / "seal.key"
    if path.exists():
        try:
            return seal.private_key_from_bytes(path.read_bytes())
        except seal.SealError as exc:
            raise EnrollmentError(f"{path} is not a raw X25519 key") from exc
    key = seal.generate_key()
    _write_private(path, seal.private_key_bytes(key))
    return key


def enroll(
    data_dir: Path, *, service_url: str, claim_code: str, timeout: float = 10.0
) -> HubConfig:
    """Redeem the claim code with the service, once, and keep what it answers."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = signing_key(data_dir)
    body = {
        "claim_code": claim_code,
        "public_key": b64encode(public_key_bytes(key.public_key())),
        "seal_key": b64encode(seal.public_key_bytes(seal_key(data_dir))),
    }
    try:
        response = httpx.post(
            f"{service_url.rstrip('/')}/v1/hubs/claim", json=body, timeout=timeout
        )
    except httpx.HTTPError as exc:
        raise EnrollmentError(f"cannot reach the service at {service_url}: {exc}") from exc
    if response.status_code != 200:
        raise EnrollmentError(f"claim refused ({response.status_code}): {response.text}")
    config = HubConfig.from_enrollment(response.json())
    (data_dir / TRUSTED_KEYS_FILE).unlink(missing_ok=True)  # the answer's keys count now
    _write_private(data_dir / "hub.json", config.to_json())
    return config


def _write_private(path: Path, content: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)
