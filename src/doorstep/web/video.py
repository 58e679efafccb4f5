"""The resident's video pages: an entry's clip (player, motion, delete) or, while the
entry is open, its live view; and the home's video settings (retention, and the drop
zone drawn on the latest still).

    GET  /homes/{home}/entries/{entry}/video      player or live view
    GET  /homes/{home}/entries/{entry}/live-url   JSON: a signed live URL (60 s)
    GET  /homes/{home}/clips/{clip}/video         the MP4, with HTTP Range
    GET  /homes/{home}/clips/{clip}/thumbnail     JPEG
    POST /homes/{home}/clips/{clip}/delete        destroys the clip's key (CSRF form)
    GET  /homes/{home}/video, POST                retention and drop zone (CSRF form)
    GET  /homes/{home}/video/still                the latest clip's thumbnail

Every route loads the home through `homes.service.owned_home` (via `clips.service`), so
another resident's home, entry or clip is "not found", as in the API.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from doorstep.access.models import Entry
from doorstep.clips import live
from doorstep.clips import service as clips
from doorstep.clips.context import ClipsDep
from doorstep.clips.router import live_entry, video_response
from doorstep.deps import RuntimeDep
from doorstep.errors import InvalidRequest, NotFound
from doorstep.homes.models import Home
from doorstep.homes.service import owned_home
from doorstep.web.deps import SessionForm, SignedInDep, UnitOfWork, WebDep, session_csrf
from doorstep.web.rendering import NO_STORE, PageRoute, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _entry(session: Session, home: Home, entry_id: str) -> Entry:
    entry = session.get(Entry, entry_id)
    if entry is None or entry.home_id != home.id:
        raise NotFound("no such entry")
    return entry


@router.get("/homes/{home_id}/entries/{entry_id}/video")
def entry_video(
    home_id: str,
    entry_id: str,
    request: Request,
    session: UnitOfWork,
    user: SignedInDep,
    web: WebDep,
) -> HTMLResponse:
    home = owned_home(session, owner=user.principal, home_id=home_id)
    entry = _entry(session, home, entry_id)
    clip = clips.clip_of_entry(session, entry_ids=[entry.id]).get(entry.id)
    context: dict[str, Any] = {
        "title": f"Video at {home.name}",
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "home": home,
        "entry": entry,
        "clip": clip,
        "live": entry.state in clips.LIVE_STATES and entry.hub_id is not None,
    }
    return render(request, "entry_video.html", context)


@router.get("/homes/{home_id}/entries/{entry_id}/live-url")
def entry_live_url(
    home_id: str,
    entry_id: str,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    clips_context: ClipsDep,
) -> Response:
    entry = live_entry(session, owner=user.principal, home_id=home_id, entry_id=entry_id)
    url, expires = live.signed_url(
        clips_context.live_key,
        viewer=user.principal.id,
        entry_id=entry.id,
        now=runtime.clock.timestamp(),
    )
    return JSONResponse({"url": url, "expires": expires}, headers=NO_STORE)


@router.get("/homes/{home_id}/clips/{clip_id}/video")
def clip_video(
    home_id: str,
    clip_id: str,
    request: Request,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    clips_context: ClipsDep,
) -> StreamingResponse:
    _home_clip(session, user, home_id, clip_id)
    return video_response(
        request, session, clips_context, user.principal, clip_id, runtime.clock.now()
    )


@router.get("/homes/{home_id}/clips/{clip_id}/thumbnail")
def clip_thumbnail(
    home_id: str,
    clip_id: str,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    clips_context: ClipsDep,
) -> Response:
    _home_clip(session, user, home_id, clip_id)
    image = clips.thumbnail(
        session,
        clips_context.storage,
        viewer=user.principal,
        clip_id=clip_id,
        now=runtime.clock.now(),
    )
    return Response(image, media_type="image/jpeg", headers=NO_STORE)


@router.post("/homes/{home_id}/clips/{clip_id}/delete")
def delete_clip(
    home_id: str,
    clip_id: str,
    _form: SessionForm,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    clips_context: ClipsDep,
) -> Response:
    _home_clip(session, user, home_id, clip_id)
    clips.delete_clip(
        session,
        clips_context.storage,
        owner=user.principal,
        clip_id=clip_id,
        now=runtime.clock.now(),
    )
    return RedirectResponse(f"/homes/{home_id}/activity", status_code=303, headers=NO_STORE)


def _home_clip(session: Session, user: Any, home_id: str, clip_id: str) -> None:
    row = clips.owned_clip(session, owner=user.principal, clip_id=clip_id)
    if row.home_id != home_id:
        raise NotFound("no such clip")


# ---- settings: retention and the drop zone ------------------------------------------------


@router.get("/homes/{home_id}/video")
def video_settings_page(
    home_id: str,
    request: Request,
    session: UnitOfWork,
    user: SignedInDep,
    web: WebDep,
    runtime: RuntimeDep,
    clips_context: ClipsDep,
) -> HTMLResponse:
    return _settings_page(request, session, user, web, runtime, clips_context, home_id, {})


def _settings_page(
    request: Request,
    session: Session,
    user: Any,
    web: Any,
    runtime: Any,
    clips_context: Any,
    home_id: str,
    errors: dict[str, str],
    *,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    settings = clips.video_settings(
        session,
        clips_context.storage,
        owner=user.principal,
        home_id=home_id,
        now=runtime.clock.now(),
    )
    home = owned_home(session, owner=user.principal, home_id=home_id)
    stored = clips.list_clips(session, owner=user.principal, home_id=home_id)
    zone = ";".join(f"{x},{y}" for x, y in settings.drop_zone or [])
    context = {
        "title": f"Video at {home.name}",
        "user": user.user,
        "csrf_token": session_csrf(web, user),
        "home": home,
        "retention_days": settings.retention_days,
        "drop_zone": zone,
        "has_still": bool(stored),
        "errors": errors,
        "notice": notice,
    }
    return render(request, "video_settings.html", context, status=status)


@router.post("/homes/{home_id}/video")
def save_video_settings(
    home_id: str,
    request: Request,
    form: SessionForm,
    session: UnitOfWork,
    user: SignedInDep,
    web: WebDep,
    runtime: RuntimeDep,
    clips_context: ClipsDep,
) -> HTMLResponse:
    owned_home(session, owner=user.principal, home_id=home_id)
    errors: dict[str, str] = {}
    retention = form.get("retention_days", "").strip()
    # ASCII digits only: `isdigit` also admits "²", and thousands of digits, which `int`
    # refuses (a crash, not a clear error).
    days = int(retention) if re.fullmatch(r"[0-9]{1,4}", retention) else 0
    if not 1 <= days <= 3650:
        errors["retention_days"] = "Keep clips between 1 and 3650 days."
    try:
        zone = parse_zone(form.get("drop_zone", ""))
    except InvalidRequest as exc:
        errors["drop_zone"] = exc.message
        zone = None
    if errors:
        return _settings_page(
            request, session, user, web, runtime, clips_context, home_id, errors, status=422
        )
    clips.update_video_settings(
        session,
        clips_context.storage,
        owner=user.principal,
        home_id=home_id,
        retention_days=days,
        drop_zone=zone,
        now=runtime.clock.now(),
    )
    return _settings_page(
        request, session, user, web, runtime, clips_context, home_id, {}, notice="Saved."
    )


def parse_zone(text: str) -> list[tuple[float, float]] | None:
    """`x,y;x,y;...` in normalized coordinates (what static/video.js writes); empty: no
    change."""
    text = text.strip()
    if not text:
        return None
    try:
        points = [
            (float(pair.split(",")[0]), float(pair.split(",")[1])) for pair in text.split(";")
        ]
    except (ValueError, IndexError) as exc:
        raise InvalidRequest("Draw the drop zone again: its points could not be read.") from exc
    if not 3 <= len(points) <= 64 or not all(0 <= x <= 1 and 0 <= y <= 1 for x, y in points):
        raise InvalidRequest("A drop zone has 3 to 64 points inside the picture.")
    return points


@router.get("/homes/{home_id}/video/still")
def video_still(
    home_id: str,
    session: UnitOfWork,
    user: SignedInDep,
    runtime: RuntimeDep,
    clips_context: ClipsDep,
) -> Response:
    image = clips.latest_thumbnail(
        session,
        clips_context.storage,
        owner=user.principal,
        home_id=home_id,
        now=runtime.clock.now(),
    )
    if image is None:
        raise NotFound("no clip yet: the still comes from the latest entry's clip")
    return Response(image, media_type="image/jpeg", headers=NO_STORE)
