"""Drop-zone motion analysis of stored clips, at the service, after each upload.

Run here rather than on the hub because the drop zone is the resident's setting, kept
with the home at the service, and a hub needs no extra CPU or configuration for it. Once
a clip is stored, `ClipAnalyser` decrypts its video to a private temporary file, runs
`video.motion.analyse` with the home's drop zone (the whole picture when none is drawn:
then only the time someone was in view is measured), removes the file and records the
result on the clip. The top 5 % of the picture, where cameras burn in their clock, is
ignored. Motion beyond the zone flags the entry in the timeline, is audited
(`clip:motion_beyond_zone`) and emails the resident through the outbox.

One worker thread: analyses run one at a time, after the upload has been answered, so
they never delay playback.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from doorstep.audit.service import append as audit
from doorstep.clips import service
from doorstep.clips.models import ClipRecord, ClipState
from doorstep.clips.storage import ClipStorage
from doorstep.clock import Clock
from doorstep.notify.outbox import resident_mail
from doorstep.sql import Tx
from doorstep.video.motion import MotionReport, Zone, analyse

log = logging.getLogger(__name__)

WHOLE_PICTURE = Zone(((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)))
# Cameras burn their clock into the top of the picture (the simulated camera's frame
# counter is there too): it changes every second and is never someone moving.
CLOCK_STRIP = Zone(((0.0, 0.0), (1.0, 0.0), (1.0, 0.05), (0.0, 0.05)))
BEYOND_MAIL = (
    "Someone went beyond your drop zone",
    "During a delivery today, someone moved outside the area you marked for parcels. "
    "The clip is in your activity timeline.",
)


class ClipAnalyser:
    def __init__(self, sessions: sessionmaker[Session], storage: ClipStorage, clock: Clock) -> None:
        self._sessions, self._storage, self._clock = sessions, storage, clock
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clip-motion")

    def submit(self, clip_id: str) -> Future[MotionReport | None]:
        return self._worker.submit(self._run, clip_id)

    def stop(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)

    def _run(self, clip_id: str) -> MotionReport | None:
        try:
            return self.analyse(clip_id)
        except Exception:  # the worker's edge: one clip's failure is logged, not fatal
            log.exception("motion analysis of clip %s failed", clip_id)
            return None

    def analyse(self, clip_id: str) -> MotionReport | None:
        plain = self._storage.staging / f"motion-{clip_id}.mp4"
        with self._sessions() as session:
            row = session.get(ClipRecord, clip_id)
            if row is None or row.state != ClipState.STORED:
                return None
            now = self._clock.now()
            settings = service.home_video(session, self._storage, home_id=row.home_id, now=now)
            zone = (
                Zone(tuple((x, y) for x, y in settings.drop_zone)) if settings.drop_zone else None
            )
            vault = service.vault_of(session, self._storage, home_id=row.home_id, now=now)
            session.commit()
        try:
            _write_private(plain, vault.read(clip_id))
            report = analyse(plain, zone or WHOLE_PICTURE, ignore=[CLOCK_STRIP])
        finally:
            plain.unlink(missing_ok=True)
        self._record(clip_id, report, zoned=zone is not None)
        return report

    def _record(self, clip_id: str, report: MotionReport, *, zoned: bool) -> None:
        with self._sessions() as session:
            row = session.get(ClipRecord, clip_id)
            if row is None or row.state != ClipState.STORED:
                return  # deleted meanwhile
            beyond = zoned and report.beyond_zone
            row.motion_beyond_zone = beyond
            row.motion_seconds = round(report.motion_seconds, 2)
            row.motion_beyond_seconds = round(report.beyond_seconds, 2) if zoned else 0.0
            row.presence_seconds = round(report.presence_seconds, 2)
            now = self._clock.now()
            data = {
                "clip_id": row.id,
                "presence_seconds": row.presence_seconds,
                "beyond_seconds": row.motion_beyond_seconds,
            }
            audit(
                session,
                at=now,
                actor="system:motion",
                action="clip:motion_beyond_zone" if beyond else "clip:motion_analysed",
                subject=row.entry_id,
                home_id=row.home_id,
                data=data,
            )
            if beyond:
                subject, text = BEYOND_MAIL
                resident_mail(
                    Tx.of_session(session),
                    event_id=f"{row.entry_id}.beyond_zone",
                    event_type="clip.beyond_zone",
                    home_id=row.home_id,
                    subject=subject,
                    text=text,
                    at=now,
                    entry_id=row.entry_id,
                )
            session.commit()


def _write_private(path: Path, chunks: object) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        for chunk in chunks:  # type: ignore[attr-defined]
            file.write(chunk)
