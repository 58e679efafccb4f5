"""Clips at the service: the hub's resumable upload, encryption at rest, playback,
deletion, retention and the privacy scan.

Upload (the hub, authenticated by its own key; `clips.router`):
1. `announce`: the clip's times and the size and SHA-256 of its two parts (video,
   thumbnail). The entry must be this hub's, and the clip must lie inside the entry's
   recording window (`entry_window`). Answers how many bytes of each part the service
   already holds, so a hub that restarted, or lost its connection, resumes there (one
   that was away so long its upload was given up starts over). An entry has one clip:
   another clip of it supersedes only an upload the hub never finished
   (`clip:upload_superseded`), never a stored one, nor one the resident deleted or
   retention expired (409).
2. `append`: a chunk of a part at an offset; an offset other than what is held is a
   409 naming it. Chunks go to a staging file, synced before the answer.
3. `complete`: each staged part is hashed and compared with what was announced. A
   mismatch is refused (422), audited, and the part starts over. Otherwise the clip is
   encrypted into the store under a fresh clip key (`video.vault.ClipVault.archive`,
   which removes the staged plaintext), the row is `stored` and the audit log says so.

A clip's bytes are streamed from the request to the staging file and from the staging
file through the cipher into the store; no whole clip is ever held in memory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from doorstep.access.models import Entry
from doorstep.accounts.service import Principal
from doorstep.audit.service import append as audit
from doorstep.clips.errors import ClipOutsideEntry, RangeNotSatisfiable, UploadOffsetMismatch
from doorstep.clips.models import DEFAULT_RETENTION_DAYS, ClipRecord, ClipState, HomeVideo
from doorstep.clips.schemas import PARTS, ClipAnnounce, Part, UploadStatus
from doorstep.clips.storage import ClipStorage
from doorstep.errors import Conflict, InvalidRequest, NotFound
from doorstep.homes.models import AccessPoint
from doorstep.homes.service import owned_home
from doorstep.video.clips import Clip
from doorstep.video.crypto import HomeKey
from doorstep.video.errors import ClipIntegrityError, ClipKeyDestroyed, ClipNotFound
from doorstep.video.vault import ClipVault, StoredClip

# The recording window of an entry, as the hub's recorder defines it: armed at the
# authorization with `RecorderOptions.pre_roll` (3 s) kept before it, plus at most one
# GOP (stream copy cuts on keyframes); disarmed at the verified relock plus the hub's
# post-roll (`hub.camera.POST_ROLL_SECONDS`, 1 s). The slack adds the camera's GOP and
# the hub's clock against the service's.
PRE_ROLL_SLACK_SECONDS = 3.0 + 2.0 + 2.0
POST_ROLL_SLACK_SECONDS = 1.0 + 2.0
HASH_BLOCK = 1024 * 1024
MIN_RETENTION_DAYS = 1  # what `VideoSettingsUpdate` allows at least
REJECTED = "rejected"  # a completion whose checksum did not match (not a row state)
ABANDONED, SUPERSEDED = "abandoned", "superseded"  # uploads given up (`delete_reason`)
GIVEN_UP = {ABANDONED, SUPERSEDED}


# ---- windows ------------------------------------------------------------------------


def entry_window(entry: Entry, *, now: datetime) -> tuple[float, float]:
    """The Unix seconds between which the entry's clip may lie."""
    end = entry.done_at or entry.locked_at
    if end is None:
        end = now if entry.state in _OPEN else entry.updated_at
    return (
        entry.created_at.timestamp() - PRE_ROLL_SLACK_SECONDS,
        end.timestamp() + POST_ROLL_SLACK_SECONDS,
    )


_OPEN = {"authorized", "unlocked", "opened", "closed", "locked"}
LIVE_STATES = _OPEN  # the recorder is armed: live view is open to the resident


def access_point_slug(session: Session, entry: Entry) -> str:
    """The hub's name for the entry's door (what its camera is keyed by)."""
    point = session.get(AccessPoint, entry.access_point_id) if entry.access_point_id else None
    if point is None:
        raise NotFound("this entry has no door")
    return point.slug


# ---- home keys and settings ------------------------------------------------------------


def home_video(session: Session, storage: ClipStorage, *, home_id: str, now: datetime) -> HomeVideo:
    """The home's video row, made with a fresh home key on first use."""
    row = session.get(HomeVideo, home_id)
    if row is None:
        row = HomeVideo(
            home_id=home_id,
            wrapped_key=storage.master.wrap(HomeKey.generate(), home_id),
            retention_days=DEFAULT_RETENTION_DAYS,
            drop_zone=None,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
    return row


def vault_of(session: Session, storage: ClipStorage, *, home_id: str, now: datetime) -> ClipVault:
    row = home_video(session, storage, home_id=home_id, now=now)
    return storage.vault(storage.master.unwrap(row.wrapped_key, home_id))


# ---- the hub's upload ---------------------------------------------------------------


def announce(
    session: Session,
    storage: ClipStorage,
    *,
    hub_id: str,
    home_id: str,
    clip: ClipAnnounce,
    now: datetime,
) -> UploadStatus:
    """Open (or resume) the upload of `clip`; the bytes held of each part so far.

    An entry has one clip. Another clip for it (the hub cut the entry's video again,
    after losing its queue or being restored from a backup) supersedes the upload the
    hub never finished: that one's staged bytes are destroyed, its row is deleted
    (`superseded`) and `clip:upload_superseded` is audited. A stored clip, or one the
    resident deleted or retention expired, is never replaced: 409."""
    row = session.get(ClipRecord, clip.clip_id)
    if row is not None:
        return _resume(session, storage, row, hub_id=hub_id, clip=clip, now=now)
    entry = session.get(Entry, clip.entry_id)
    if entry is None or entry.hub_id != hub_id or entry.home_id != home_id:
        raise NotFound("no such entry")
    earlier = session.scalars(
        select(ClipRecord).where(ClipRecord.entry_id == entry.id).with_for_update()
    ).all()
    if any(not _replaceable(other, hub_id) for other in earlier):
        raise Conflict("this entry already has a clip")
    start, end = entry_window(entry, now=now)
    if not (start <= clip.started_at <= clip.ended_at <= end):
        raise ClipOutsideEntry("the clip is not inside its entry's recording window")
    for other in earlier:
        if other.state == ClipState.UPLOADING:
            _supersede(session, storage, other, by=clip.clip_id, now=now)
    session.add(
        ClipRecord(
            id=clip.clip_id,
            entry_id=entry.id,
            home_id=home_id,
            hub_id=hub_id,
            access_point=clip.access_point,
            state=ClipState.UPLOADING,
            started_at=_utc(clip.started_at),
            ended_at=_utc(clip.ended_at),
            duration=clip.duration,
            complete=clip.complete,
            recording={
                "armed_at": clip.armed_at,
                "disarmed_at": clip.disarmed_at,
                "stop_at": clip.stop_at,
                "gaps": [list(gap) for gap in clip.gaps],
            },
            video_size=clip.video.size,
            video_sha256=clip.video.sha256,
            thumbnail_size=clip.thumbnail.size,
            thumbnail_sha256=clip.thumbnail.sha256,
            created_at=now,
        )
    )
    session.flush()
    return _status(storage, clip.clip_id, ClipState.UPLOADING)


def _replaceable(row: ClipRecord, hub_id: str) -> bool:
    """Whether another clip of `row`'s entry may take its place: an upload this hub never
    finished, or one already given up."""
    if row.state == ClipState.UPLOADING:
        return row.hub_id == hub_id
    return row.state == ClipState.DELETED and row.delete_reason in GIVEN_UP


def _supersede(
    session: Session, storage: ClipStorage, row: ClipRecord, *, by: str, now: datetime
) -> None:
    shutil.rmtree(storage.staging / row.id, ignore_errors=True)
    row.state, row.deleted_at, row.delete_reason = ClipState.DELETED, now, SUPERSEDED
    session.flush()  # before the new row: one clip of the entry that is not deleted
    audit(
        session,
        at=now,
        actor=f"hub:{row.hub_id}",
        action="clip:upload_superseded",
        subject=row.entry_id,
        home_id=row.home_id,
        data={"clip_id": row.id, "by": by},
    )


def _resume(
    session: Session,
    storage: ClipStorage,
    row: ClipRecord,
    *,
    hub_id: str,
    clip: ClipAnnounce,
    now: datetime,
) -> UploadStatus:
    """The upload of a clip announced before, from where it stands. One given up while
    its hub was away (`abandon_stale_uploads`) starts over, unless the entry has another
    clip by now: the hub still has the video, and nobody chose to delete it."""
    if row.hub_id != hub_id:
        raise NotFound("no such clip")
    same = (row.entry_id, row.video_sha256, row.thumbnail_sha256) == (
        clip.entry_id,
        clip.video.sha256,
        clip.thumbnail.sha256,
    )
    if not same:
        raise Conflict("this clip was announced with other contents")
    if row.state == ClipState.DELETED and row.delete_reason == ABANDONED:
        _reopen(session, row, now=now)
    return _status(storage, row.id, ClipState(row.state))


def _reopen(session: Session, row: ClipRecord, *, now: datetime) -> None:
    others = session.scalars(
        select(ClipRecord.id)
        .where(ClipRecord.entry_id == row.entry_id, ClipRecord.state != ClipState.DELETED)
        .with_for_update()
    ).all()
    if others:
        return
    row.state, row.deleted_at, row.delete_reason = ClipState.UPLOADING, None, None
    row.created_at = now  # what `abandon_stale_uploads` counts from
    audit(
        session,
        at=now,
        actor=f"hub:{row.hub_id}",
        action="clip:upload_reopened",
        subject=row.entry_id,
        home_id=row.home_id,
        data={"clip_id": row.id},
    )


def upload_status(
    session: Session, storage: ClipStorage, *, hub_id: str, clip_id: str
) -> UploadStatus:
    row = _hub_clip(session, hub_id, clip_id)
    return _status(storage, row.id, ClipState(row.state))


def append(
    session: Session,
    storage: ClipStorage,
    *,
    hub_id: str,
    clip_id: str,
    part: Part,
    offset: int,
    chunk: bytes,
) -> UploadStatus:
    """Write `chunk` at `offset` of the staged part (which must end there)."""
    row = _hub_clip(session, hub_id, clip_id, lock=True)
    if row.state != ClipState.UPLOADING:
        return _status(storage, row.id, ClipState(row.state))
    path = storage.staged(clip_id, part)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    held = _size(path)
    if offset != held:
        raise UploadOffsetMismatch(
            f"the service holds {held} bytes of this part", details={"received": held}
        )
    if held + len(chunk) > _declared(row, part):
        raise InvalidRequest("the chunk goes past the part's announced size")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "ab") as file:
        file.write(chunk)
        file.flush()
        os.fsync(file.fileno())
    return _status(storage, row.id, ClipState.UPLOADING)


def complete(
    session: Session,
    storage: ClipStorage,
    *,
    hub_id: str,
    clip_id: str,
    now: datetime,
) -> UploadStatus:
    """Check every part against its announced checksum; then encrypt and store the clip.
    A part that does not match is discarded (the hub sends it again) and the refusal is
    audited: the answer's state is then `rejected` (the router answers 422)."""
    row = _hub_clip(session, hub_id, clip_id, lock=True)
    if row.state != ClipState.UPLOADING:
        return _status(storage, row.id, ClipState(row.state))
    for part in PARTS:
        path = storage.staged(clip_id, part)
        if _size(path) != _declared(row, part):
            raise InvalidRequest(f"the {part} is not fully uploaded yet")
    bad = [part for part in PARTS if _sha256(storage.staged(clip_id, part)) != _digest(row, part)]
    if bad:
        for part in bad:
            storage.staged(clip_id, part).unlink(missing_ok=True)
        audit(
            session,
            at=now,
            actor=f"hub:{hub_id}",
            action="clip:upload_rejected",
            subject=row.entry_id,
            home_id=row.home_id,
            data={"clip_id": row.id, "reason": "checksum_mismatch", "parts": ",".join(bad)},
        )
        return UploadStatus(
            clip_id=row.id,
            state=REJECTED,
            received=_status(storage, row.id, ClipState.UPLOADING).received,
        )
    vault = vault_of(session, storage, home_id=row.home_id, now=now)
    vault.archive(_recorded_clip(row, storage))
    shutil.rmtree(storage.staging / clip_id, ignore_errors=True)
    row.state, row.stored_at = ClipState.STORED, now
    audit(
        session,
        at=now,
        actor=f"hub:{hub_id}",
        action="clip:stored",
        subject=row.entry_id,
        home_id=row.home_id,
        data={
            "clip_id": row.id,
            "duration": round(row.duration, 3),
            "bytes": row.video_size,
            "complete": row.complete,
        },
    )
    return _status(storage, row.id, ClipState.STORED)


def _recorded_clip(row: ClipRecord, storage: ClipStorage) -> Clip:
    recording = row.recording
    return Clip(
        clip_id=row.id,
        entry_id=row.entry_id,
        video=storage.staged(row.id, "video"),
        thumbnail=storage.staged(row.id, "thumbnail"),
        started_at=row.started_at.timestamp(),
        ended_at=row.ended_at.timestamp(),
        duration=row.duration,
        armed_at=float(recording["armed_at"]),
        disarmed_at=float(recording["disarmed_at"]),
        stop_at=float(recording["stop_at"]),
        gaps=tuple((float(a), float(b)) for a, b in recording["gaps"]),
        complete=row.complete,
    )


def _hub_clip(session: Session, hub_id: str, clip_id: str, *, lock: bool = False) -> ClipRecord:
    """This hub's clip (`lock`: its row locked, so another clip of its entry supersedes
    it only before or after this request, never while it writes the staged parts)."""
    row = session.get(ClipRecord, clip_id, with_for_update=lock)
    if row is None or row.hub_id != hub_id:
        raise NotFound("no such clip")
    return row


def _status(storage: ClipStorage, clip_id: str, state: ClipState) -> UploadStatus:
    if state == ClipState.UPLOADING:
        received = {part: _size(storage.staged(clip_id, part)) for part in PARTS}
    else:
        received = {}
    return UploadStatus(clip_id=clip_id, state=state, received=received)


def _declared(row: ClipRecord, part: Part) -> int:
    return row.video_size if part == "video" else row.thumbnail_size


def _digest(row: ClipRecord, part: Part) -> str:
    return row.video_sha256 if part == "video" else row.thumbnail_sha256


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# ---- the resident ---------------------------------------------------------------------


def list_clips(session: Session, *, owner: Principal, home_id: str) -> Sequence[ClipRecord]:
    home = owned_home(session, owner=owner, home_id=home_id)
    return session.scalars(
        select(ClipRecord)
        .where(ClipRecord.home_id == home.id, ClipRecord.state == ClipState.STORED)
        .order_by(ClipRecord.started_at.desc())
    ).all()


def owned_clip(session: Session, *, owner: Principal, clip_id: str) -> ClipRecord:
    """A stored clip of one of the resident's homes; anything else is "not found"."""
    row = session.get(ClipRecord, clip_id)
    if row is None or row.state != ClipState.STORED:
        raise ClipNotFound("no such clip")
    owned_home(session, owner=owner, home_id=row.home_id)  # NotFound if not theirs
    return row


def clip_of_entry(session: Session, *, entry_ids: Sequence[str]) -> dict[str, ClipRecord]:
    """Stored clips of these entries, by entry (the timeline's one query)."""
    rows = session.scalars(
        select(ClipRecord).where(
            ClipRecord.entry_id.in_(list(entry_ids)), ClipRecord.state == ClipState.STORED
        )
    )
    return {row.entry_id: row for row in rows}


BEYOND_ZONE_FLAG = "Moved beyond the drop zone"


def drop_zone_flags(session: Session, *, entry_ids: Sequence[str]) -> dict[str, str]:
    """The timeline's flag for entries whose clip showed motion beyond the drop zone."""
    rows = session.scalars(
        select(ClipRecord.entry_id).where(
            ClipRecord.entry_id.in_(list(entry_ids)),
            ClipRecord.state == ClipState.STORED,
            ClipRecord.motion_beyond_zone.is_(True),
        )
    )
    return dict.fromkeys(rows, BEYOND_ZONE_FLAG)


@dataclass(frozen=True)
class Playback:
    """What a range response needs: the byte range and its plaintext, chunk by chunk."""

    total: int
    start: int
    end: int  # exclusive
    body: Iterator[bytes]


def play(
    session: Session,
    storage: ClipStorage,
    *,
    viewer: Principal,
    clip_id: str,
    byte_range: tuple[int | None, int | None] | None,
    now: datetime,
) -> Playback:
    """Bytes of the clip's video for `byte_range`, as in an HTTP Range header: (first,
    last inclusive or None), or (None, n) for the last n bytes; None: all.
    RangeNotSatisfiable (its details name the size) when no byte of the clip is in it. A
    request from the first byte counts as a view: `clip:viewed` is audited (a player's
    further range requests do not)."""
    row = owned_clip(session, owner=viewer, clip_id=clip_id)
    vault = vault_of(session, storage, home_id=row.home_id, now=now)
    total = vault.size(row.id)
    start, end = _resolve_range(byte_range, total)
    if start == 0:
        audit(
            session,
            at=now,
            actor=viewer.actor,
            action="clip:viewed",
            subject=row.entry_id,
            home_id=row.home_id,
            data={"clip_id": row.id},
        )
    return Playback(total, start, end, vault.read(row.id, start, end))


def _resolve_range(byte_range: tuple[int | None, int | None] | None, total: int) -> tuple[int, int]:
    if byte_range is None:
        return 0, total
    first, last = byte_range
    if first is None:  # a suffix range: the last `last` bytes (zero of them: no byte)
        first, last = (max(0, total - last), total - 1) if last else (total, None)
    if first >= total:
        raise RangeNotSatisfiable(f"the clip has {total} bytes", details={"size": total})
    end = total if last is None else min(last + 1, total)
    return first, end


def thumbnail(
    session: Session, storage: ClipStorage, *, viewer: Principal, clip_id: str, now: datetime
) -> bytes:
    row = owned_clip(session, owner=viewer, clip_id=clip_id)
    return vault_of(session, storage, home_id=row.home_id, now=now).thumbnail(row.id)


def latest_thumbnail(
    session: Session, storage: ClipStorage, *, owner: Principal, home_id: str, now: datetime
) -> bytes | None:
    clips = list_clips(session, owner=owner, home_id=home_id)
    if not clips:
        return None
    return thumbnail(session, storage, viewer=owner, clip_id=clips[0].id, now=now)


def delete_clip(
    session: Session, storage: ClipStorage, *, owner: Principal, clip_id: str, now: datetime
) -> None:
    """Destroy the clip's key, then its objects, and audit it (`clip:deleted`)."""
    row = owned_clip(session, owner=owner, clip_id=clip_id)
    _destroy(session, storage, row, now=now, reason="resident", actor=owner.actor)


def _destroy(
    session: Session,
    storage: ClipStorage,
    row: ClipRecord,
    *,
    now: datetime,
    reason: str,
    actor: str,
) -> None:
    storage.keys.destroy(row.id)  # first: from here no copy of the ciphertext opens
    for name in storage.store.list(f"{row.id}/"):
        storage.store.delete(name)
    shutil.rmtree(storage.staging / row.id, ignore_errors=True)
    row.state, row.deleted_at, row.delete_reason = ClipState.DELETED, now, reason
    action = "clip:deleted" if reason == "resident" else "clip:expired"
    audit(
        session,
        at=now,
        actor=actor,
        action=action,
        subject=row.entry_id,
        home_id=row.home_id,
        data={"clip_id": row.id},
    )


# ---- retention --------------------------------------------------------------------------


def expire(session: Session, storage: ClipStorage, *, now: datetime) -> int:
    """Delete the stored clips older than their home's retention (default 30 days);
    each is audited (`clip:expired`). Returns how many."""
    rows = session.execute(
        select(ClipRecord, HomeVideo.retention_days)
        .outerjoin(HomeVideo, HomeVideo.home_id == ClipRecord.home_id)
        .where(
            ClipRecord.state == ClipState.STORED,
            ClipRecord.started_at < now - timedelta(days=MIN_RETENTION_DAYS),
        )
        .order_by(ClipRecord.started_at)
    ).all()
    expired = 0
    for row, days in rows:
        if row.started_at < now - timedelta(days=days or DEFAULT_RETENTION_DAYS):
            _destroy(session, storage, row, now=now, reason="retention", actor="system:retention")
            expired += 1
    return expired


def abandon_stale_uploads(
    session: Session, storage: ClipStorage, *, now: datetime, older_than: timedelta
) -> int:
    """Uploads left unfinished for `older_than`: their staged plaintext is removed (their
    hub, if it comes back, sends the clip again from the start)."""
    rows = session.scalars(
        select(ClipRecord).where(
            ClipRecord.state == ClipState.UPLOADING, ClipRecord.created_at < now - older_than
        )
    ).all()
    for row in rows:
        _destroy(session, storage, row, now=now, reason=ABANDONED, actor="system:retention")
    return len(rows)


# ---- the privacy scan ---------------------------------------------------------------


@dataclass(frozen=True)
class ScanFinding:
    clip_id: str
    entry_id: str | None
    problem: str


def scan(session: Session, storage: ClipStorage, *, now: datetime) -> list[ScanFinding]:
    """Decrypt every clip in the store and check its recorded time range (from its
    encrypted manifest) against its entry's recording window. A clip the database does
    not know, that does not open, or that lies outside the window is a finding."""
    findings = []
    for clip_id in sorted({name.split("/", 1)[0] for name in storage.store.list()}):
        row = session.get(ClipRecord, clip_id)
        if row is None or row.state != ClipState.STORED:
            findings.append(ScanFinding(clip_id, None, "not a stored clip of any entry"))
            continue
        try:
            manifest = vault_of(session, storage, home_id=row.home_id, now=now).manifest(clip_id)
        except (ClipIntegrityError, ClipKeyDestroyed, ClipNotFound) as exc:
            findings.append(ScanFinding(clip_id, row.entry_id, f"does not open: {exc}"))
            continue
        findings.extend(_outside(session, manifest, row, now=now))
    return findings


def _outside(
    session: Session, manifest: StoredClip, row: ClipRecord, *, now: datetime
) -> list[ScanFinding]:
    entry = session.get(Entry, manifest.entry_id)
    if entry is None or entry.id != row.entry_id:
        return [ScanFinding(row.id, manifest.entry_id, "its manifest names another entry")]
    start, end = entry_window(entry, now=now)
    if start <= manifest.started_at and manifest.ended_at <= end:
        return []
    return [ScanFinding(row.id, entry.id, "video outside the entry's recording window")]


# ---- settings -----------------------------------------------------------------------


def video_settings(
    session: Session, storage: ClipStorage, *, owner: Principal, home_id: str, now: datetime
) -> HomeVideo:
    home = owned_home(session, owner=owner, home_id=home_id)
    return home_video(session, storage, home_id=home.id, now=now)


def update_video_settings(
    session: Session,
    storage: ClipStorage,
    *,
    owner: Principal,
    home_id: str,
    retention_days: int | None,
    drop_zone: Sequence[tuple[float, float]] | None,
    now: datetime,
) -> HomeVideo:
    from doorstep.video.motion import Zone

    row = video_settings(session, storage, owner=owner, home_id=home_id, now=now)
    changed: dict[str, object] = {}
    if retention_days is not None:
        row.retention_days = changed["retention_days"] = retention_days
    if drop_zone is not None:
        try:
            Zone(tuple((float(x), float(y)) for x, y in drop_zone))
        except ValueError as exc:
            raise InvalidRequest(f"drop_zone: {exc}") from exc
        row.drop_zone = [[round(x, 4), round(y, 4)] for x, y in drop_zone]
        changed["drop_zone_points"] = len(drop_zone)
    row.updated_at = now
    audit(
        session,
        at=now,
        actor=owner.actor,
        action="home:video_settings",
        subject=row.home_id,
        home_id=row.home_id,
        data=changed,
    )
    return row
