"""Video for Doorstep's hub: cameras, entry recording, encrypted clips, drop-zone motion.

- `camera.SimulatedCamera`: a real ffmpeg encoder streaming H.264 (MPEG-TS over UDP on
  loopback) from a test pattern or a generated scene (`scene`), that can be killed or
  frozen.
- `recorder.Recorder`: one camera URL segmented by stream copy into a private spool with
  a rolling pre-roll; `arm`/`disarm` per entry give a `clips.Clip` (MP4 with fast
  start, thumbnail, exact times); `liveness()` says whether the camera is live, stalled
  or frozen (`liveness`).
- `vault.ClipVault`: clips encrypted per clip (AES-256-GCM, chunked for range reads,
  `crypto`), keys wrapped by the home's key, stored behind `storage.ClipStore`; deleting
  a clip destroys its key.
- `motion.analyse`: whether motion in a clip went beyond the resident's drop zone.

The flow per entry: on the hub, `arm` at authorization (the hub refuses to unlock unless
`liveness().live`), `disarm` at the verified relock, then the clip goes to the hub's
upload queue (`doorstep.hub.uploader`); at the service (`doorstep.clips`), once its
checksums match, `ClipVault.archive` encrypts it (removing the plaintext) and
`motion.analyse` runs on it with the home's drop zone.

Needs the ffmpeg and ffprobe programs (Debian's `ffmpeg` package) and, for `motion`,
`opencv-python-headless`.
"""

from doorstep.video.camera import SimulatedCamera, Source
from doorstep.video.clips import Clip
from doorstep.video.crypto import FileKeyStore, HomeKey, KeyStore
from doorstep.video.errors import (
    CameraError,
    ClipIntegrityError,
    ClipKeyDestroyed,
    ClipNotFound,
    RecorderError,
    VideoError,
)
from doorstep.video.liveness import CameraState, Liveness
from doorstep.video.recorder import Recorder, RecorderOptions
from doorstep.video.scene import Waypoint, delivery_walk
from doorstep.video.storage import ClipStore, FileClipStore
from doorstep.video.vault import ClipVault, StoredClip, clips_outside

__all__ = [
    "CameraError",
    "CameraState",
    "Clip",
    "ClipIntegrityError",
    "ClipKeyDestroyed",
    "ClipNotFound",
    "ClipStore",
    "ClipVault",
    "FileClipStore",
    "FileKeyStore",
    "HomeKey",
    "KeyStore",
    "Liveness",
    "Recorder",
    "RecorderError",
    "RecorderOptions",
    "SimulatedCamera",
    "Source",
    "StoredClip",
    "VideoError",
    "Waypoint",
    "clips_outside",
    "delivery_walk",
]
