"""The retention job: clips older than their home's retention are deleted (their keys
destroyed, audited `clip:expired`), and uploads abandoned for `abandon_upload_hours`
lose their staged bytes. `serve` runs it every `retention_sweep_seconds` on a thread of
its own; `doorstep clips expire` runs it once."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from doorstep.clips import service
from doorstep.clips.storage import ClipStorage
from doorstep.clock import Clock
from doorstep.settings import ClipSettings

log = logging.getLogger(__name__)


def run_once(
    sessions: sessionmaker[Session], storage: ClipStorage, settings: ClipSettings, clock: Clock
) -> tuple[int, int]:
    """(clips expired, uploads abandoned), committed."""
    with sessions() as session:
        now = clock.now()
        expired = service.expire(session, storage, now=now)
        abandoned = service.abandon_stale_uploads(
            session, storage, now=now, older_than=timedelta(hours=settings.abandon_upload_hours)
        )
        session.commit()
    return expired, abandoned


class RetentionJob:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        storage: ClipStorage,
        settings: ClipSettings,
        clock: Clock,
    ) -> None:
        self._args = (sessions, storage, settings, clock)
        self._every = settings.retention_sweep_seconds
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="clip-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            try:
                expired, abandoned = run_once(*self._args)
                if expired or abandoned:
                    log.info(
                        "retention: %d clips expired, %d uploads abandoned", expired, abandoned
                    )
            except Exception:  # the job's edge: try again next round
                log.exception("clip retention failed")
            if self._halt.wait(self._every):
                return
