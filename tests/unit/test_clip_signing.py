"""The small pure pieces of clip access: the hub's request signatures, the live view's
short-lived signed URLs, and the Range header the player sends."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.clips import live
from doorstep.clips.errors import RangeNotSatisfiable
from doorstep.clips.router import parse_range
from doorstep.clips.service import _resolve_range
from doorstep.protocol import hubauth
from doorstep.protocol.grants import public_key_bytes

KEY = b"k" * 32
NOW = 1_800_000_000.0


def _signed(key: Ed25519PrivateKey, body: bytes = b"chunk", at: int = int(NOW)) -> str:
    return hubauth.sign(
        key, hub_id="hub-1", method="PUT", path="/v1/hub/clips/c/video?offset=0", body=body, at=at
    )


def _verify(
    header: str,
    public: bytes,
    *,
    path: str = "/v1/hub/clips/c/video?offset=0",
    body: bytes = b"chunk",
    now: float = NOW,
) -> None:
    hubauth.verify(
        hubauth.parse(header),
        public,
        method="PUT",
        path=path,
        digest=hubauth.body_digest(body),
        now=now,
    )


def test_a_hub_signature_covers_method_path_body_and_time() -> None:
    key = Ed25519PrivateKey.generate()
    public = public_key_bytes(key.public_key())
    header = _signed(key)
    _verify(header, public)
    for changed in (
        {"path": "/v1/hub/clips/c/video?offset=1"},
        {"body": b"chunk!"},
        {"now": NOW + hubauth.FRESHNESS_SECONDS + 1},
        {"now": NOW - hubauth.FRESHNESS_SECONDS - 1},
    ):
        with pytest.raises(hubauth.HubAuthError):
            _verify(header, public, **changed)  # type: ignore[arg-type]
    other = public_key_bytes(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(hubauth.HubAuthError):
        _verify(header, other)


def test_a_signature_names_its_hub_so_another_hub_with_the_same_key_cannot_claim_it() -> None:
    # A data directory enrolled again keeps its key, so two hubs can share a public key
    # (and anyone may enroll a hub under a key they saw). A request one of them signed must
    # not pass as the other's by rewriting the header's hub id.
    key = Ed25519PrivateKey.generate()
    public = public_key_bytes(key.public_key())
    header = _signed(key)
    _verify(header, public)
    forged = header.replace("hub=hub-1,", "hub=hub-2,")
    assert hubauth.parse(forged).hub_id == "hub-2"
    with pytest.raises(hubauth.HubAuthError):
        _verify(forged, public)


@pytest.mark.parametrize("header", ["", "hub=x", "hub=a b,t=1,sig=AA", "hub=x,t=now,sig=AA"])
def test_malformed_hub_headers_are_refused(header: str) -> None:
    with pytest.raises(hubauth.HubAuthError):
        hubauth.parse(header)


def test_a_live_url_opens_for_its_viewer_and_entry_for_a_minute_only() -> None:
    url, expires = live.signed_url(KEY, viewer="usr-1", entry_id="ent-1", now=NOW)
    sig = url.split("sig=")[1]
    assert expires - NOW == live.URL_TTL_SECONDS
    good = {"viewer": "usr-1", "entry_id": "ent-1", "expires": expires, "sig": sig}
    assert live.check_url(KEY, **good, now=NOW)
    assert not live.check_url(KEY, **{**good, "viewer": "usr-2"}, now=NOW)
    assert not live.check_url(KEY, **{**good, "entry_id": "ent-2"}, now=NOW)
    assert not live.check_url(KEY, **{**good, "expires": expires + 3600}, now=NOW)
    assert not live.check_url(KEY, **good, now=expires + 1)
    assert not live.check_url(b"x" * 32, **good, now=NOW)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, (0, 100)),
        ("bytes=0-", 100, (0, 100)),
        ("bytes=0-9", 100, (0, 10)),
        ("bytes=90-200", 100, (90, 100)),
        ("bytes=-10", 100, (90, 100)),
        ("bytes=-500", 100, (0, 100)),
        ("bytes=0-1,5-6", 100, (0, 100)),  # several ranges: the whole body
        ("bytes=5-1", 100, (0, 100)),  # invalid (RFC 9110 14.1.1): ignored, the whole body
        ("bytes=-", 100, (0, 100)),
    ],
)
def test_ranges(header: str | None, size: int, expected: tuple[int, int]) -> None:
    assert _resolve_range(parse_range(header), size) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        _resolve_range(parse_range(header), 100)
