"""Every `serve` on one database uses the same keys: checked when `serve` starts.

The keys in `<data dir>/keys/` seal and sign what the database keeps: the two-step
secrets (`totp.key`), the webhooks' secrets (`webhook-secrets.key`), the clips' keys
(`clips-master.key`); and what users carry from one request to the next, which the
next request may put to another process: sign-in forms (`web-csrf.key`), live-view
URLs (`live-url.key`), the guess limiters' shared counts (`guess-limits.key`). A
second process with keys of its own (another data dir) answers 500 to a sign-in whose
two-step secret the first sealed, and splits the guess counts in two.

So `serve` records a fingerprint of these keys in the database on its first start
(table `shared_keys`), and a later `serve` whose keys give another fingerprint refuses
to start (`KeysNotShared`): one line, before the broker or the web server starts.

Fingerprinted are the keys made once and never changed after (`SHARED_KEY_FILES`). Not
the issuer keys (`issuer-<kid>.pem`, `signing`, `published.json`): `doorstep keys add /
use / retire` change those while the service runs (`grants.rotation`), and a key
change is no sign of another directory; a process with other issuer keys shows itself
by its entries, which hubs refuse. The fingerprint is SHA-256 over a label and each
file's name and contents, in name order: the keys are 32 random bytes each, so it
reveals nothing usable about them.

Keys replaced on purpose for every process (the old ones lost for good, and with them
every sealed secret): `DELETE FROM shared_keys`, and the next `serve` records the new
fingerprint.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from sqlalchemy import Engine, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from doorstep import db
from doorstep.web.security import load_or_create_key

# Each made by its owner with `load_or_create_key` or the like: 32 random bytes, 0600.
SHARED_KEY_FILES = (
    "clips-master.key",  # doorstep.clips.storage.MASTER_KEY_FILE
    "guess-limits.key",  # doorstep.ratelimit.KEY_FILE
    "live-url.key",  # doorstep.clips.live.KEY_FILE
    "totp.key",  # doorstep.accounts.twofactor.KEY_FILE
    "web-csrf.key",  # doorstep.web.security
    "webhook-secrets.key",  # doorstep.notify.sealing.KEY_FILE
)
_LABEL = b"doorstep shared keys v1"
_ROW = 1  # the table's one row


class SharedKeys(db.Base):
    """The fingerprint of the keys every `serve` of this database must share."""

    __tablename__ = "shared_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    fingerprint: Mapped[str] = mapped_column(String(64))  # hex SHA-256 (`fingerprint`)


class KeysNotShared(Exception):
    """This data dir's keys are not the ones the database's other `serve` processes use."""


def fingerprint(directory: Path) -> str:
    """The fingerprint of the shared keys in `directory`; a key not made yet is made
    now, as the service would make it on start."""
    digest = hashlib.sha256(_LABEL)
    for name in sorted(SHARED_KEY_FILES):
        key = load_or_create_key(directory, name)
        for part in (name.encode(), key):
            digest.update(len(part).to_bytes(4, "big") + part)
    return digest.hexdigest()


def check(engine: Engine, directory: Path) -> None:
    """Record the fingerprint of `directory`'s shared keys if the database has none yet
    (of two processes starting at once, the first to write it wins); KeysNotShared if it
    holds another."""
    mine = fingerprint(directory)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO shared_keys (id, fingerprint) VALUES (:id, :fingerprint)"
                " ON CONFLICT DO NOTHING"
            ),
            {"id": _ROW, "fingerprint": mine},
        )
        recorded = connection.execute(
            text("SELECT fingerprint FROM shared_keys WHERE id = :id"), {"id": _ROW}
        ).scalar_one()
    if not hmac.compare_digest(recorded.encode(), mine.encode()):
        raise KeysNotShared(
            f"the keys in {directory} ({', '.join(SHARED_KEY_FILES)}) are not the ones"
            " the other `serve` processes of this database use: give every process the"
            " same keys (copy the keys/ directory of the first); with its own, its"
            " sign-ins fail and hubs refuse its entries"
        )
