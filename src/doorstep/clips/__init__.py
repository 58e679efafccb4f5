"""Entry clips at the service: the hub's upload, encryption at rest, playback, live view,
deletion, retention, drop-zone motion analysis and the privacy scan.

- `storage`: where clips and keys live (master key file -> home keys in the database ->
  a key per clip -> chunked AES-256-GCM objects in a `video.storage.ClipStore`).
- `service`: upload (resumable, SHA-256 checked), playback by byte range, deletion,
  retention, scan; `router`: the HTTP routes (hub routes signed with the hub's key).
- `live`: the MJPEG relay from the hub to the resident, opened by a signed URL.
- `analysis`: motion beyond the drop zone, after each upload; `retention`: the job.

`install(app)` builds the shared pieces and mounts the routes; `start(app)` and
`stop(app)` run the background jobs within the app's lifespan.
"""

from __future__ import annotations

from fastapi import FastAPI

from doorstep.clips import live
from doorstep.clips.analysis import ClipAnalyser
from doorstep.clips.context import ClipContext
from doorstep.clips.retention import RetentionJob
from doorstep.clips.router import HUB_PREFIX, UPLOAD_PREFIX, hub_router, router
from doorstep.clips.storage import ClipStorage
from doorstep.deps import Runtime

__all__ = ["HUB_PREFIX", "UPLOAD_PREFIX", "install", "start", "stop"]


def install(app: FastAPI) -> None:
    runtime: Runtime = app.state.runtime
    settings = runtime.settings
    storage = ClipStorage.under(settings.data_dir, settings.clips)
    app.state.clips = ClipContext(
        settings=settings.clips,
        storage=storage,
        analyser=ClipAnalyser(runtime.sessions, storage, runtime.clock),
        relay=live.LiveRelay(),
        live_key=live.load_or_create_key(settings.data_dir / "keys"),
    )
    app.include_router(router)
    app.include_router(hub_router)


def start(app: FastAPI) -> None:
    runtime: Runtime = app.state.runtime
    clips: ClipContext = app.state.clips
    app.state.clip_retention = RetentionJob(
        runtime.sessions, clips.storage, clips.settings, runtime.clock
    )
    app.state.clip_retention.start()


def stop(app: FastAPI) -> None:
    app.state.clip_retention.stop()
    app.state.clips.analyser.stop()
