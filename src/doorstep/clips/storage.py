"""Where a deployment keeps clips, and whose key opens them.

    <data dir>/keys/clips-master.key   32 random bytes (0600), made on first start: the
                                       deployment's key-encryption key for home keys
    home_video.wrapped_key (database)  each home's key, AES-256-GCM under the master key,
                                       bound to the home id
    <data dir>/clips/keys/<clip>.key   each clip's key, wrapped by its home's key
                                       (`video.crypto.FileKeyStore`)
    <data dir>/clips/objects/<clip>/   the clip's video, thumbnail and manifest, encrypted
                                       per clip in 64 KiB chunks (`video.vault.ClipVault`)
    <data dir>/clips/staging/<clip>/   the parts of a clip still being uploaded, in plain
                                       (0700), removed once the clip is stored

So a database dump alone opens nothing (the master key is a file), the store alone opens
nothing (the keys are elsewhere), and deleting a clip destroys its wrapped key: what
remains of its ciphertext anywhere cannot be opened even with every other key. Keep
`keys/` and `clips/keys/` out of backups of the store (see `video.crypto.FileKeyStore`).

The object store is the `video.storage.ClipStore` interface. With `clips.store = "s3"`
the objects go to a bucket of an S3-compatible endpoint instead (`video.s3.S3ClipStore`,
keys `<s3_prefix><clip>/<part>`), and `clips/objects/` is not used. The master key, the
clip keys and the staging folder stay on the local filesystem in both cases, by design:
the bucket alone opens nothing, and whoever can read it (the provider, a leaked bucket
credential, a bucket backup) holds only ciphertext whose keys it never sees.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from doorstep.settings import ClipSettings
from doorstep.video.crypto import KEY_SIZE, FileKeyStore, HomeKey
from doorstep.video.errors import ClipIntegrityError
from doorstep.video.storage import ClipStore, FileClipStore
from doorstep.video.vault import ClipVault

MASTER_KEY_FILE = "clips-master.key"
_HOME_AAD = b"doorstep home key v1 "


class MasterKey:
    """Wraps and unwraps home keys; never touches a clip."""

    def __init__(self, secret: bytes) -> None:
        self._aead = AESGCM(secret)

    @classmethod
    def load_or_create(cls, path: Path) -> MasterKey:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            return cls(path.read_bytes())
        except FileNotFoundError:
            secret = AESGCM.generate_key(bit_length=256)
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first
                return cls(path.read_bytes())
            with os.fdopen(descriptor, "wb") as file:
                file.write(secret)
                file.flush()
                os.fsync(file.fileno())
            return cls(secret)

    def wrap(self, home_key: HomeKey, home_id: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, home_key.secret, _HOME_AAD + home_id.encode())

    def unwrap(self, wrapped: bytes, home_id: str) -> HomeKey:
        if len(wrapped) != 12 + KEY_SIZE + 16:
            raise ClipIntegrityError("malformed wrapped home key")
        try:
            secret = self._aead.decrypt(wrapped[:12], wrapped[12:], _HOME_AAD + home_id.encode())
        except InvalidTag as exc:
            raise ClipIntegrityError("home key does not open") from exc
        return HomeKey(secret)


@dataclass
class ClipStorage:
    master: MasterKey
    store: ClipStore
    keys: FileKeyStore
    staging: Path

    @classmethod
    def under(cls, data_dir: Path, settings: ClipSettings | None = None) -> ClipStorage:
        """The storage of `data_dir`; its objects where `settings` say (default: files)."""
        root = data_dir / "clips"
        staging = root / "staging"
        staging.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls(
            master=MasterKey.load_or_create(data_dir / "keys" / MASTER_KEY_FILE),
            store=object_store(root / "objects", settings or ClipSettings()),
            keys=FileKeyStore(root / "keys"),
            staging=staging,
        )

    def vault(self, home_key: HomeKey) -> ClipVault:
        return ClipVault(self.store, self.keys, home_key)

    def staged(self, clip_id: str, part: str) -> Path:
        return self.staging / clip_id / part


def object_store(root: Path, settings: ClipSettings) -> ClipStore:
    """The configured store of clip objects (`root` is the file store's folder)."""
    if settings.store == "file":
        return FileClipStore(root)
    from doorstep.video.s3 import S3ClipStore  # boto3 is imported only when used

    assert settings.s3_bucket is not None  # checked by ClipSettings
    secret = settings.s3_secret_access_key
    return S3ClipStore(
        bucket=settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        prefix=settings.s3_prefix,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret is not None else None,
        addressing_style=settings.s3_addressing_style,
    )
