"""What the clip routes share, built once per app by `clips.install`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from doorstep.clips.analysis import ClipAnalyser
from doorstep.clips.live import LiveRelay
from doorstep.clips.storage import ClipStorage
from doorstep.settings import ClipSettings


@dataclass
class ClipContext:
    settings: ClipSettings
    storage: ClipStorage
    analyser: ClipAnalyser
    relay: LiveRelay
    live_key: bytes

    def analyse(self, clip_id: str) -> None:
        if self.settings.analyse_motion:
            self.analyser.submit(clip_id)


def get_clips(request: Request) -> ClipContext:
    clips: ClipContext = request.app.state.clips
    return clips


ClipsDep = Annotated[ClipContext, Depends(get_clips)]
