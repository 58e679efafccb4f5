"""HTTP routes of the clip service.

Hub (signed with the hub's key, `protocol.hubauth`; a hub reaches only its own clips):

    POST /v1/hub/clips                        announce a clip -> bytes held per part
    GET  /v1/hub/clips/{clip}                 bytes held per part (to resume)
    PUT  /v1/hub/clips/{clip}/{part}?offset=N a chunk of the video or the thumbnail
    POST /v1/hub/clips/{clip}/complete        verify SHA-256, encrypt, store (422 if not)
    GET  /v1/hub/live/wanted?wait=S           the hub's doors someone is watching
    POST /v1/hub/live/{door}/frame            one JPEG frame -> {"wanted": bool}

Resident (bearer token; another resident's clip or home is "not found"):

    GET    /v1/homes/{home}/clips             stored clips, newest first
    GET    /v1/clips/{clip}/video             the MP4, with HTTP Range (206)
    GET    /v1/clips/{clip}/thumbnail         JPEG
    DELETE /v1/clips/{clip}                   destroys its key and its objects
    GET    /v1/homes/{home}/video-settings    retention (days) and drop zone
    PUT    /v1/homes/{home}/video-settings
    POST   /v1/homes/{home}/entries/{entry}/live-url   a signed URL, valid 60 s
    GET    /v1/live/{entry}?viewer&exp&sig   MJPEG while the entry is open
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, StreamingResponse

from doorstep import db
from doorstep.access.models import Entry
from doorstep.accounts.models import PrincipalKind, User
from doorstep.accounts.service import Principal
from doorstep.audit.service import append as audit
from doorstep.clips import live, service
from doorstep.clips.context import ClipContext, ClipsDep
from doorstep.clips.errors import ClipChecksumMismatch, HubNotAuthenticated, RangeNotSatisfiable
from doorstep.clips.models import ClipRecord
from doorstep.clips.schemas import (
    ClipAnnounce,
    ClipRead,
    LiveUrlRead,
    MotionRead,
    Part,
    UploadStatus,
    VideoSettingsRead,
    VideoSettingsUpdate,
)
from doorstep.deps import Resident, RuntimeDep, SessionDep, WritingSessionDep
from doorstep.errors import InvalidRequest, NotFound
from doorstep.homes.models import Home, Hub
from doorstep.homes.service import owned_home
from doorstep.permissions import PrincipalRole
from doorstep.protocol import hubauth

HUB_PREFIX = "/v1/hub/"
UPLOAD_PREFIX = "/v1/hub/clips"
_RANGE = re.compile(r"([0-9]*)-([0-9]*)")
MAX_POSITION_DIGITS = 18
ENTRY_CHECK_SECONDS = 2.0  # how often a live stream checks that its entry is still open

router = APIRouter(tags=["clips"])
hub_router = APIRouter(tags=["hub"], include_in_schema=False)


# ---- the hub's signature ------------------------------------------------------------


@dataclass(frozen=True)
class SignedHub:
    hub_id: str
    home_id: str
    body: bytes


async def signed_hub(request: Request, runtime: RuntimeDep) -> SignedHub:
    """The hub that signed this request (`protocol.hubauth`), and the request's body."""
    header = request.headers.get(hubauth.HEADER)
    if not header:
        raise HubNotAuthenticated("a hub signature is required")
    try:
        signed = hubauth.parse(header)
    except hubauth.HubAuthError as exc:
        raise HubNotAuthenticated(str(exc)) from exc
    body = await request.body()
    hub = await run_in_threadpool(_hub_key, runtime, signed.hub_id)
    if hub is None:
        raise HubNotAuthenticated("unknown hub")
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        hubauth.verify(
            signed,
            hub[0],
            method=request.method,
            path=path,
            digest=hubauth.body_digest(body),
            now=runtime.clock.timestamp(),
        )
    except hubauth.HubAuthError as exc:
        raise HubNotAuthenticated(str(exc)) from exc
    return SignedHub(signed.hub_id, hub[1], body)


def _hub_key(runtime: Any, hub_id: str) -> tuple[bytes, str] | None:
    with runtime.sessions() as session:
        db.read_only(session)
        hub = session.get(Hub, hub_id)
        if hub is None or hub.public_key is None or hub.claimed_at is None:
            return None
        return bytes(hub.public_key), hub.home_id


HubDep = Annotated[SignedHub, Depends(signed_hub)]


# ---- upload ---------------------------------------------------------------------------


@hub_router.post(UPLOAD_PREFIX, response_model=UploadStatus)
def announce(
    hub: HubDep, session: SessionDep, runtime: RuntimeDep, clips: ClipsDep
) -> UploadStatus:
    try:
        clip = ClipAnnounce.model_validate_json(hub.body)
    except ValueError as exc:
        raise InvalidRequest(f"clip announcement: {exc}") from exc
    return service.announce(
        session,
        clips.storage,
        hub_id=hub.hub_id,
        home_id=hub.home_id,
        clip=clip,
        now=runtime.clock.now(),
    )


@hub_router.get(UPLOAD_PREFIX + "/{clip_id}", response_model=UploadStatus)
def upload_status(clip_id: str, hub: HubDep, session: SessionDep, clips: ClipsDep) -> UploadStatus:
    return service.upload_status(session, clips.storage, hub_id=hub.hub_id, clip_id=clip_id)


@hub_router.put(UPLOAD_PREFIX + "/{clip_id}/{part}", response_model=UploadStatus)
def upload_chunk(
    clip_id: str,
    part: Part,
    hub: HubDep,
    session: SessionDep,
    clips: ClipsDep,
    offset: Annotated[int, Query(ge=0)],
) -> UploadStatus:
    return service.append(
        session,
        clips.storage,
        hub_id=hub.hub_id,
        clip_id=clip_id,
        part=part,
        offset=offset,
        chunk=hub.body,
    )


@hub_router.post(UPLOAD_PREFIX + "/{clip_id}/complete", response_model=UploadStatus)
def complete_upload(
    clip_id: str, hub: HubDep, session: SessionDep, runtime: RuntimeDep, clips: ClipsDep
) -> Any:
    status = service.complete(
        session, clips.storage, hub_id=hub.hub_id, clip_id=clip_id, now=runtime.clock.now()
    )
    if status.state == service.REJECTED:
        # Answered (not raised) so the unit of work commits the audited refusal.
        error = ClipChecksumMismatch("a part did not match its SHA-256; send it again")
        return JSONResponse({**error.body(), "status": status.model_dump()}, status_code=422)
    if status.state == "stored":
        session.commit()  # analysed only once the clip is durably stored
        clips.analyse(clip_id)
    return status


# ---- live frames from the hub -----------------------------------------------------------


@hub_router.get("/v1/hub/live/wanted")
async def live_wanted(
    hub: HubDep, clips: ClipsDep, wait: Annotated[float, Query(ge=0, le=30)] = 20
) -> dict[str, list[str]]:
    return {"access_points": await clips.relay.wait_wanted(hub.hub_id, wait)}


@hub_router.post("/v1/hub/live/{access_point}/frame")
async def live_frame(access_point: str, hub: HubDep, clips: ClipsDep) -> dict[str, bool]:
    if not hub.body or len(hub.body) > live.MAX_FRAME_BYTES or not hub.body.startswith(b"\xff\xd8"):
        raise InvalidRequest("a frame is one JPEG image")
    return {"wanted": await clips.relay.publish(hub.hub_id, access_point, hub.body)}


# ---- the resident -------------------------------------------------------------------


def clip_read(row: ClipRecord) -> ClipRead:
    motion = None
    if row.motion_seconds is not None:
        motion = MotionRead(
            beyond_zone=bool(row.motion_beyond_zone),
            motion_seconds=row.motion_seconds,
            beyond_seconds=row.motion_beyond_seconds or 0.0,
            presence_seconds=row.presence_seconds or 0.0,
        )
    return ClipRead(
        id=row.id,
        entry_id=row.entry_id,
        access_point=row.access_point,
        state=row.state,
        started_at=row.started_at,
        ended_at=row.ended_at,
        duration=row.duration,
        complete=row.complete,
        size=row.video_size,
        motion=motion,
    )


@router.get("/v1/homes/{home_id}/clips", response_model=list[ClipRead])
def list_clips(home_id: str, principal: Resident, session: SessionDep) -> list[ClipRead]:
    return [clip_read(row) for row in service.list_clips(session, owner=principal, home_id=home_id)]


@router.get("/v1/clips/{clip_id}/video")
def clip_video(
    clip_id: str,
    request: Request,
    principal: Resident,
    session: WritingSessionDep,
    runtime: RuntimeDep,
    clips: ClipsDep,
) -> StreamingResponse:
    return video_response(request, session, clips, principal, clip_id, runtime.clock.now())


def video_response(
    request: Request, session: Any, clips: ClipContext, viewer: Any, clip_id: str, now: Any
) -> StreamingResponse:
    """The clip's video for this request's Range header (206), or whole (200)."""
    byte_range = parse_range(request.headers.get("range"))
    try:
        playback = service.play(
            session, clips.storage, viewer=viewer, clip_id=clip_id, byte_range=byte_range, now=now
        )
    except RangeNotSatisfiable as exc:
        # RFC 9110 section 15.5.17: a 416 names the size, so a player can ask again.
        return StreamingResponse(
            iter([orjson.dumps(exc.body())]),
            status_code=exc.status,
            headers={"content-range": f"bytes */{exc.details['size']}"},
            media_type="application/json",
        )
    headers = {
        "accept-ranges": "bytes",
        "content-length": str(playback.end - playback.start),
        "cache-control": "private, no-store",
    }
    status = 200
    if byte_range is not None:
        status = 206
        headers["content-range"] = f"bytes {playback.start}-{playback.end - 1}/{playback.total}"
    return StreamingResponse(
        _chunks(playback.body), status_code=status, headers=headers, media_type="video/mp4"
    )


def _chunks(body: Iterator[bytes]) -> Iterator[bytes]:
    yield from body  # decrypted in the thread pool, chunk by chunk, as the client reads


def parse_range(header: str | None) -> tuple[int | None, int | None] | None:
    """The one range of a Range header (RFC 9110 section 14.1.2), what players send:
    `bytes=first-last`, `bytes=first-` or `bytes=-suffix`, as (first, last) with None
    for what it leaves out. None, to serve the whole body (RFC 9110 allows ignoring
    Range), for no header, another unit, several ranges, or a range its grammar makes
    invalid (`bytes=5-3`, `bytes=-`)."""
    if header is None:
        return None
    unit, _, ranges = header.partition("=")
    specs = [spec.strip(" \t") for spec in ranges.split(",")]
    specs = [spec for spec in specs if spec]  # empty list elements are allowed
    match = _RANGE.fullmatch(specs[0]) if len(specs) == 1 else None
    if unit.lower() != "bytes" or match is None:
        return None
    first, last = (_position(digits) if digits else None for digits in match.groups())
    if first is None and last is None:
        return None
    if first is not None and last is not None and last < first:
        return None
    return first, last


def _position(digits: str) -> int:
    """A byte position; one with more digits than any clip's size has is capped (and
    `int` refuses strings of thousands of digits)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= MAX_POSITION_DIGITS else 10**MAX_POSITION_DIGITS


@router.get("/v1/clips/{clip_id}/thumbnail")
def clip_thumbnail(
    clip_id: str,
    principal: Resident,
    session: WritingSessionDep,
    runtime: RuntimeDep,
    clips: ClipsDep,
) -> Response:
    image = service.thumbnail(
        session, clips.storage, viewer=principal, clip_id=clip_id, now=runtime.clock.now()
    )
    return Response(image, media_type="image/jpeg", headers={"cache-control": "private, no-store"})


@router.delete("/v1/clips/{clip_id}", status_code=204)
def delete_clip(
    clip_id: str, principal: Resident, session: SessionDep, runtime: RuntimeDep, clips: ClipsDep
) -> Response:
    service.delete_clip(
        session, clips.storage, owner=principal, clip_id=clip_id, now=runtime.clock.now()
    )
    return Response(status_code=204)


@router.get("/v1/homes/{home_id}/video-settings", response_model=VideoSettingsRead)
def get_video_settings(
    home_id: str,
    principal: Resident,
    session: WritingSessionDep,
    runtime: RuntimeDep,
    clips: ClipsDep,
) -> VideoSettingsRead:
    row = service.video_settings(
        session, clips.storage, owner=principal, home_id=home_id, now=runtime.clock.now()
    )
    return VideoSettingsRead(retention_days=row.retention_days, drop_zone=row.drop_zone)


@router.put("/v1/homes/{home_id}/video-settings", response_model=VideoSettingsRead)
def put_video_settings(
    home_id: str,
    body: VideoSettingsUpdate,
    principal: Resident,
    session: SessionDep,
    runtime: RuntimeDep,
    clips: ClipsDep,
) -> VideoSettingsRead:
    row = service.update_video_settings(
        session,
        clips.storage,
        owner=principal,
        home_id=home_id,
        retention_days=body.retention_days,
        drop_zone=body.drop_zone,
        now=runtime.clock.now(),
    )
    return VideoSettingsRead(retention_days=row.retention_days, drop_zone=row.drop_zone)


# ---- live view ----------------------------------------------------------------------------


def live_entry(session: Any, *, owner: Any, home_id: str, entry_id: str) -> Entry:
    """An open entry at one of the resident's homes (with a hub), else "not found"."""
    home = owned_home(session, owner=owner, home_id=home_id)
    entry: Entry | None = session.get(Entry, entry_id)
    if entry is None or entry.home_id != home.id or entry.hub_id is None:
        raise NotFound("no such entry")
    if entry.state not in service.LIVE_STATES:
        raise NotFound("this entry is not in progress; its clip follows when it ends")
    return entry


@router.post("/v1/homes/{home_id}/entries/{entry_id}/live-url", response_model=LiveUrlRead)
def live_url(
    home_id: str,
    entry_id: str,
    principal: Resident,
    session: SessionDep,
    runtime: RuntimeDep,
    clips: ClipsDep,
) -> LiveUrlRead:
    entry = live_entry(session, owner=principal, home_id=home_id, entry_id=entry_id)
    url, expires = live.signed_url(
        clips.live_key, viewer=principal.id, entry_id=entry.id, now=runtime.clock.timestamp()
    )
    return LiveUrlRead(url=url, expires_at=service._utc(expires))


@router.get("/v1/live/{entry_id}", include_in_schema=False)
async def live_stream(
    entry_id: str,
    runtime: RuntimeDep,
    clips: ClipsDep,
    viewer: Annotated[str, Query(max_length=64)],
    exp: Annotated[int, Query()],
    sig: Annotated[str, Query(max_length=64)],
) -> StreamingResponse:
    if not live.check_url(
        clips.live_key,
        viewer=viewer,
        entry_id=entry_id,
        expires=exp,
        sig=sig,
        now=runtime.clock.timestamp(),
    ):
        raise NotFound("this live link has expired; open live view again")
    hub_id, access_point = await run_in_threadpool(_open_live, runtime, viewer, entry_id)
    frames = clips.relay.watch(hub_id, access_point)
    return StreamingResponse(
        _while_open(runtime, entry_id, frames),
        media_type=f"multipart/x-mixed-replace; boundary={live.BOUNDARY}",
        headers={"cache-control": "no-store"},
    )


async def _while_open(
    runtime: Any, entry_id: str, frames: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """The frames, until the entry ends: live view is for the time someone is inside."""
    checked = 0.0
    async for part in frames:
        now = time.monotonic()
        if now - checked >= ENTRY_CHECK_SECONDS:
            checked = now
            if not await run_in_threadpool(_still_open, runtime, entry_id):
                return
        yield part


def _still_open(runtime: Any, entry_id: str) -> bool:
    with runtime.sessions() as session:
        db.read_only(session)
        entry = session.get(Entry, entry_id)
        return entry is not None and entry.state in service.LIVE_STATES


def _open_live(runtime: Any, viewer: str, entry_id: str) -> tuple[str, str]:
    """Check the viewer may still watch, audit `live:viewed`, and name the camera."""
    with runtime.sessions() as session:
        entry = session.get(Entry, entry_id)
        user = session.get(User, viewer)
        home = session.get(Home, entry.home_id) if entry and entry.home_id else None
        if entry is None or user is None or not user.active or home is None:
            raise NotFound("no such entry")
        principal = Principal(PrincipalKind.USER, user.id, PrincipalRole(user.role))
        live_entry(session, owner=principal, home_id=home.id, entry_id=entry.id)
        access_point = service.access_point_slug(session, entry)
        audit(
            session,
            at=runtime.clock.now(),
            actor=principal.actor,
            action="live:viewed",
            subject=entry.id,
            home_id=home.id,
            data={"access_point": access_point},
        )
        session.commit()
        assert entry.hub_id is not None
        return entry.hub_id, access_point
