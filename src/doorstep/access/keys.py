"""Issuer keys: the Ed25519 keys grants and hubs' desired documents are signed with.

Kept in `<data dir>/keys/`:
- `issuer-<kid>.pem`: one key each, PKCS#8 PEM (mode 0600). Every key here is published:
  it is in each hub's desired document (`issuer_keys`, the complete set the hub trusts)
  and in the enrollment answer.
- `signing`: the kid of the one key that signs. Adding a key does not change it, so a new
  key is published (and trusted by every hub) before it signs, and an old one stays
  published until the grants it signed have expired. A data directory of the previous
  release has no such file: its newest key signs, and is written down.
- `published.json`: written by `serve` when it starts and whenever it takes up changed
  keys (`record_published`): the kids it publishes, the kid it signs with, and for each
  kid the version of each enrolled hub's desired document from which that kid is in it.
  A hub trusts a kid once its reported version reaches that version (or if it enrolled
  after the kid was published: the enrollment answer held it).
- `retired/issuer-<kid>.pem`: the keys `retire` took out of use (mode 0600). Nothing reads
  them; they are kept, not destroyed, so that a key retired by mistake can be put back
  (moved back up, it is published again) and so that deleting one is the operator's own
  decision.

The service reads the keys when it starts; `doorstep keys add / use / retire` change the
files, and a running `serve` takes the change up within seconds (`grants.rotation`,
which watches `fingerprint`), as it would at its next start: it raises every enrolled
hub's shadow version (when the published set changed) so that each hub gets, and
reports, a document with the new set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.protocol.grants import GrantSigner, key_id_for, public_key_bytes
from doorstep.protocol.shadow import MAX_ISSUER_KEYS

SIGNING_FILE = "signing"
PUBLISHED_FILE = "published.json"
RETIRED_DIR = "retired"


class IssuerKeyError(Exception):
    """A key command that cannot be done, or a keys directory that cannot be used."""


@dataclass(frozen=True)
class IssuerKeys:
    signer: GrantSigner
    public: dict[str, bytes]  # kid -> raw Ed25519 public key, every key hubs should trust


@dataclass(frozen=True)
class Published:
    """What `serve` last published (`published.json`); empty before its first start."""

    kids: frozenset[str] = frozenset()
    signing: str | None = None
    since: dict[str, dict[str, int]] = field(default_factory=dict)  # kid -> hub -> version

    def trusted_by(self, kid: str, hub_id: str, reported_version: int) -> bool:
        """Whether the hub has applied a document (or enrollment answer) holding `kid`."""
        if kid not in self.kids:
            return False
        since = self.since.get(kid, {}).get(hub_id)
        return since is None or reported_version >= since


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    created: datetime
    signing: bool


def load_or_create(directory: Path) -> IssuerKeys:
    """The keys to publish and the one that signs; the first key is made if there is none."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not _key_files(directory):
        _create(directory)
    if _signing_kid(directory) is None:  # as the previous release chose: the newest
        paths = _key_files(directory)
        newest = max(paths, key=lambda kid: paths[kid].stat().st_mtime)
        _write_atomic(directory / SIGNING_FILE, newest.encode())
    return load(directory)


def load(directory: Path) -> IssuerKeys:
    """The keys to publish and the one that signs, as the files are now. IssuerKeyError,
    naming the file, if a key file is no Ed25519 key or not the key its name says, or if
    the signing key has no file."""
    paths = _key_files(directory)
    keys = {kid: _load(path) for kid, path in paths.items()}
    for kid, key in keys.items():
        if key_id_for(key.public_key()) != kid:
            raise IssuerKeyError(f"{paths[kid]} holds key {key_id_for(key.public_key())}")
    signing = _signing_kid(directory)
    if signing not in keys:
        raise IssuerKeyError(f"the signing key {signing} (keys/{SIGNING_FILE}) has no key file")
    public = {kid: public_key_bytes(key.public_key()) for kid, key in keys.items()}
    return IssuerKeys(signer=GrantSigner(keys[signing]), public=public)


def fingerprint(directory: Path) -> tuple[str | None, frozenset[tuple[str, int, int]]]:
    """What `load` reads, in brief: the signing kid, and each key file's name, inode and
    time of last change. It differs once a `doorstep keys` command has changed either."""
    files = set()
    for path in directory.glob("issuer-*.pem"):
        try:
            stat = path.stat()
        except FileNotFoundError:  # retired as we looked
            continue
        files.add((path.name, stat.st_ino, stat.st_mtime_ns))
    return _signing_kid(directory), frozenset(files)


def listing(directory: Path) -> list[KeyInfo]:
    """Every key, oldest first."""
    signing = _signing_kid(directory)
    keys = [
        KeyInfo(kid, datetime.fromtimestamp(path.stat().st_mtime, UTC), kid == signing)
        for kid, path in _key_files(directory).items()
    ]
    return sorted(keys, key=lambda key: (key.created, key.kid))


def add(directory: Path) -> str:
    """Make a new key; it is published (by `serve`, within seconds), and does not sign."""
    if not (directory / SIGNING_FILE).exists():
        load_or_create(directory)  # the current signer is written down before a key is added
    if len(_key_files(directory)) >= MAX_ISSUER_KEYS:
        raise IssuerKeyError(f"there are {MAX_ISSUER_KEYS} keys already; retire one first")
    return _create(directory).name.removeprefix("issuer-").removesuffix(".pem")


def use(directory: Path, kid: str) -> None:
    """Make `kid` the signing key (once `serve` has taken the change up)."""
    _require(directory, kid)
    _write_atomic(directory / SIGNING_FILE, kid.encode())


def retire(directory: Path, kid: str) -> Path:
    """Take the key `kid` out of use: it is no longer published, and hubs stop trusting it
    once they apply their next document. Its file is moved to `retired/` (mode 0600), not
    destroyed; where it is now is returned. Never the signing key, nor one `serve` still
    signs with."""
    path = _require(directory, kid)
    if kid == _signing_kid(directory):
        raise IssuerKeyError(f"{kid} is the signing key: `doorstep keys use` another key first")
    if kid == read_published(directory).signing:
        raise IssuerKeyError(
            f"the running service still signs with {kid}: wait a few seconds for it to take"
            " up the new signing key (or start `doorstep serve`, if it is not running)"
        )
    retired = directory / RETIRED_DIR
    retired.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o600)
    kept = retired / path.name
    os.replace(path, kept)
    return kept


def read_published(directory: Path) -> Published:
    path = directory / PUBLISHED_FILE
    if not path.exists():
        return Published()
    try:
        body = orjson.loads(path.read_bytes())
        since = {
            str(kid): {str(hub): int(version) for hub, version in hubs.items()}
            for kid, hubs in body["since"].items()
        }
        return Published(frozenset(map(str, body["kids"])), body["signing"], since)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise IssuerKeyError(f"{path} is unreadable: {exc}") from exc


def needs_bump(directory: Path, keys: IssuerKeys) -> bool:
    """Whether the keys to publish differ from those last published (hubs must be told)."""
    return set(keys.public) != read_published(directory).kids


def record_published(directory: Path, keys: IssuerKeys, bumped: Mapping[str, int]) -> None:
    """Write down what `serve` publishes from now on; `bumped` is each enrolled hub's new
    shadow version, from which a key not published before is in its documents."""
    before = read_published(directory)
    since = {
        kid: dict(bumped) if kid not in before.kids else before.since.get(kid, {})
        for kid in sorted(keys.public)
    }
    body = {"kids": sorted(keys.public), "signing": keys.signer.kid, "since": since}
    _write_atomic(directory / PUBLISHED_FILE, orjson.dumps(body))


def _require(directory: Path, kid: str) -> Path:
    path = _key_files(directory).get(kid)
    if path is None:
        raise IssuerKeyError(f"no issuer key {kid!r} (see `doorstep keys list`)")
    return path


def _key_files(directory: Path) -> dict[str, Path]:
    return {
        path.name.removeprefix("issuer-").removesuffix(".pem"): path
        for path in directory.glob("issuer-*.pem")
    }


def _signing_kid(directory: Path) -> str | None:
    path = directory / SIGNING_FILE
    return path.read_text().strip() if path.exists() else None


def _create(directory: Path) -> Path:
    key = Ed25519PrivateKey.generate()
    path = directory / f"issuer-{key_id_for(key.public_key())}.pem"
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        os.fsync(handle.fileno())
    return path


def _write_atomic(path: Path, content: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two processes may write
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _load(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise IssuerKeyError(f"{path} cannot be read as a key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise IssuerKeyError(f"{path} is not an Ed25519 key")
    return key
