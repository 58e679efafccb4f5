"""Keypad codes from the signed desired shadow, through a real Mosquitto to the simulated lock.

What issue 5 asks of the hub: a signed desired document programs the lock; codes open
only inside their windows, from valid_from until valid_until, for their uses; a code
removed from the set is refused once the hub has reported the new version; a revoked
token id is refused; forged, foreign and stale documents change nothing; a restart keeps
what was applied; the TC_DRLK_2_2/2_3 lockout, step by step; a keypad entry is an entry.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from datetime import time as wall_time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from shadow_rig import DOOR, ServiceSide, ShadowRig, T

from doorstep.broker import Mosquitto, hash_password, new_password
from doorstep.hub.credential_store import CredentialStore, HeldCredential
from doorstep.hub.credentials import CredentialManager, KeypadDefaults
from doorstep.hub.drivers.simulated import SimulatedLock
from doorstep.hub.journal import Journal
from doorstep.hub.keypad import DaysMask, UserType
from doorstep.hub.lock import LockDriver, OperationSource
from doorstep.hub.scheduling import ManualScheduler
from doorstep.protocol import seal
from doorstep.protocol.codes import Reason
from doorstep.protocol.grants import public_key_bytes
from doorstep.protocol.messages import EventKind, Reply, b64encode
from doorstep.protocol.shadow import DesiredDocument, sign_shadow
from doorstep.video.camera import SimulatedCamera, Source
from doorstep.video.clips import Clip
from doorstep.video.errors import VideoError
from doorstep.video.liveness import CameraState, Liveness
from polling import wait_until

PIN = "4711"
GRANT = "grt-cleaner"
WEEKDAYS = int(
    DaysMask.MONDAY | DaysMask.TUESDAY | DaysMask.WEDNESDAY | DaysMask.THURSDAY | DaysMask.FRIDAY
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path_factory.mktemp("shadow-broker"))
    mosquitto.start({})
    yield mosquitto
    mosquitto.stop()


@pytest.fixture(scope="module")
def hub_accounts() -> dict[str, str]:
    return {}


@pytest.fixture
def make_rig(
    tmp_path: Path, broker: Mosquitto, hub_accounts: dict[str, str]
) -> Iterator[Callable[..., tuple[ShadowRig, ServiceSide]]]:
    """A hub of its own (a fresh id, so no retained document or session carries over)."""
    rigs: list[tuple[ShadowRig, ServiceSide]] = []

    def make(
        keypad: KeypadDefaults | None = None,
        extra_locks: dict[str, LockDriver] | None = None,
        camera_url: str | None = None,
    ) -> tuple[ShadowRig, ServiceSide]:
        hub_id = f"hub-{secrets.token_hex(8)}"
        password = new_password()
        hub_accounts[hub_id] = hash_password(password)
        broker.update_hubs(hub_accounts)
        service = ServiceSide(broker, hub_id)
        rig = ShadowRig(
            data_dir=tmp_path / hub_id,
            broker=broker,
            hub_id=hub_id,
            password=password,
            issuer=Ed25519PrivateKey.generate(),
            keypad=keypad or KeypadDefaults(),
            extra_locks=extra_locks or {},
            camera_url=camera_url,
        )
        rig.data_dir.mkdir()
        rig.boot()
        rigs.append((rig, service))
        return rig, service

    yield make
    for rig, service in rigs:
        rig.stop()
        service.close()


@pytest.fixture
def rig(make_rig: Callable[..., tuple[ShadowRig, ServiceSide]]) -> tuple[ShadowRig, ServiceSide]:
    return make_rig()


def applied(version: int) -> Callable[[dict[str, Any]], bool]:
    return lambda report: report["version"] >= version


def states(service: ServiceSide, version: int) -> dict[str, str]:
    _, report = service.report(applied(version))
    return dict(report["credentials"])


# --- programming ---------------------------------------------------------------------


def test_a_signed_desired_document_programs_the_lock(rig) -> None:
    hub, service = rig
    service.publish_desired(hub.desired(hub.credential(GRANT, PIN, name="Cleaner")))

    assert states(service, 1) == {GRANT: "active"}
    user = hub.lock.get_user(1)
    assert user is not None and user.name == "Cleaner"
    assert user.user_type is UserType.UNRESTRICTED
    assert hub.lock.get_pin(1) is not None
    assert hub.type_code(PIN) == {
        "granted": True,
        "error": None,
        "user_index": 1,
        "lockout_engaged": False,
    }
    assert hub.type_code("0000")["error"] == "invalid_credential"


def test_the_hub_reports_what_it_applied(rig) -> None:
    hub, service = rig
    service.publish_desired(hub.desired(hub.credential(GRANT, PIN)))

    _, report = service.report(applied(1))

    assert report["hub"] == hub.hub_id
    assert report["applied_at"] == pytest.approx(hub.now())
    applied_event = hub.wait_for_events(EventKind.SHADOW_APPLIED)[0]
    assert applied_event.data == {"version": 1, "credentials": {GRANT: "active"}}


def test_a_week_day_code_opens_inside_its_window_only(rig) -> None:
    hub, service = rig
    window = {"days": WEEKDAYS, "start": "09:00", "end": "17:00"}
    service.publish_desired(hub.desired(hub.credential(GRANT, PIN, week_days=[window])))
    assert states(service, 1) == {GRANT: "active"}
    assert hub.lock.get_user(1).user_type is UserType.WEEK_DAY_SCHEDULE
    schedule = hub.lock.get_week_day_schedule(1, 1)
    assert (schedule.start, schedule.end) == (wall_time(9), wall_time(17))

    assert hub.type_code(PIN)["granted"]  # Friday 09:00 in Paris: the window opens
    hub.advance(8 * 3600)  # 17:00:00, its last second
    assert hub.type_code(PIN)["granted"]
    hub.advance(60)  # 17:01
    assert hub.type_code(PIN)["error"] == "restricted"
    hub.advance(2 * 86400 - 60)  # Sunday 17:00: not one of its days
    assert hub.type_code(PIN)["error"] == "restricted"


def test_a_year_day_code_follows_the_homes_wall_clock(rig) -> None:
    hub, service = rig
    days = {"start": "2027-01-15T10:00:00", "end": "2027-01-15T12:00:00"}  # Paris time
    service.publish_desired(hub.desired(hub.credential(GRANT, PIN, year_days=[days])))
    assert states(service, 1) == {GRANT: "active"}
    assert hub.lock.get_user(1).user_type is UserType.YEAR_DAY_SCHEDULE

    assert hub.type_code(PIN)["error"] == "restricted"  # 09:00 Paris
    hub.advance(3600)
    assert hub.type_code(PIN)["granted"]  # 10:00 Paris = 09:00 UTC


def test_a_code_is_scheduled_before_valid_from_and_cleared_after_valid_until(rig) -> None:
    hub, service = rig
    code = hub.credential(GRANT, PIN, valid_from=T + 3600, valid_until=T + 7200)
    service.publish_desired(hub.desired(code))

    assert states(service, 1) == {GRANT: "scheduled"}
    assert hub.lock.get_user(1) is None
    assert hub.type_code(PIN)["error"] == "invalid_credential"

    hub.advance(3600)
    service.report(lambda report: report["credentials"] == {GRANT: "active"})
    assert hub.type_code(PIN)["granted"]

    hub.advance(3600)
    service.report(lambda report: report["credentials"] == {GRANT: "cleared"})
    assert hub.lock.get_user(1) is None
    assert hub.type_code(PIN)["error"] == "invalid_credential"


def test_a_code_past_its_end_is_never_programmed(rig) -> None:
    hub, service = rig
    service.publish_desired(hub.desired(hub.credential(GRANT, PIN, valid_until=T - 1)))

    assert states(service, 1) == {GRANT: "cleared"}
    assert hub.lock.get_user(1) is None


def test_a_credential_removed_from_the_next_version_is_refused(rig) -> None:
    hub, service = rig
    keep = hub.credential("grt-keep", "2468")
    service.publish_desired(hub.desired(hub.credential(GRANT, PIN), keep))
    assert states(service, 1) == {GRANT: "active", "grt-keep": "active"}
    assert hub.type_code(PIN)["granted"]

    sent = service.publish_desired(hub.desired(keep))
    arrived, report = service.report(applied(2))

    assert report["credentials"] == {"grt-keep": "active"}
    assert hub.type_code(PIN)["error"] == "invalid_credential"
    assert hub.type_code("2468")["granted"]
    # A benchmark figure (the lead measures p99); here only a loose bound.
    assert arrived - sent < 3.0


def test_a_revocation_the_lock_cannot_take_yet_is_reported_and_retried(rig) -> None:
    """Fail closed: while the lock is out of reach the code is still on it, so the hub
    says so (`failed:lock_unreachable`) and clears it as soon as the lock is back."""
    hub, service = rig
    service.publish_desired(hub.desired(hub.credential(GRANT, PIN)))
    states(service, 1)
    hub.door("offline")

    service.publish_desired(hub.desired())

    assert states(service, 2) == {GRANT: "failed:lock_unreachable"}
    assert hub.type_code(PIN)["granted"]  # the keypad is on the lock: it still knows the code
    hub.door("manual_lock")
    hub.door("online")
    hub.advance(10)  # RETRY_SECONDS
    service.report(lambda report: report["version"] == 2 and report["credentials"] == {})
    assert hub.type_code(PIN)["error"] == "invalid_credential"


def test_a_changed_credential_is_reprogrammed(rig) -> None:
    hub, service = rig
    service.publish_desired(hub.desired(hub.credential(GRANT, PIN)))
    states(service, 1)

    service.publish_desired(hub.desired(hub.credential(GRANT, "13579")))

    assert states(service, 2) == {GRANT: "active"}
    assert hub.type_code(PIN)["error"] == "invalid_credential"
    assert hub.type_code("13579")["granted"]


def test_a_code_with_uses_is_cleared_when_spent(rig) -> None:
    hub, service = rig
    service.publish_desired(hub.desired(hub.credential(GRANT, PIN, uses=2)))
    states(service, 1)

    assert hub.type_code(PIN)["granted"]
    hub.door("manual_lock")
    assert hub.type_code(PIN)["granted"]
    service.report(lambda report: report["credentials"] == {GRANT: "cleared"})

    assert hub.type_code(PIN)["error"] == "invalid_credential"


def test_a_single_use_code_is_a_disposable_user(rig) -> None:
    hub, service = rig
    service.publish_desired(hub.desired(hub.credential(GRANT, PIN, uses=1)))
    states(service, 1)
    assert hub.lock.get_user(1).user_type is UserType.DISPOSABLE

    assert hub.type_code(PIN)["granted"]

    service.report(lambda report: report["credentials"] == {GRANT: "cleared"})
    assert hub.type_code(PIN)["error"] == "invalid_credential"


class KeypadlessLock:
    """A lock with no keypad: only the `LockDriver` half of a simulated lock."""

    def __init__(self) -> None:
        self._lock = SimulatedLock()
        self.status, self.unlock, self.lock = self._lock.status, self._lock.unlock, self._lock.lock
        self.subscribe, self.close = self._lock.subscribe, self._lock.close


def test_codes_for_a_door_without_keypad_or_unknown_fail(make_rig) -> None:
    hub, service = make_rig(extra_locks={"garage": KeypadlessLock()})
    service.publish_desired(
        hub.desired(
            hub.credential("grt-garage", PIN, access_point="garage"),
            hub.credential("grt-shed", "2468", access_point="shed"),
            hub.credential(GRANT, "1357"),
        )
    )

    assert states(service, 1) == {
        "grt-garage": "failed:no_keypad",
        "grt-shed": "failed:unknown_access_point",
        GRANT: "active",
    }


def test_the_same_pin_twice_fails_the_second(rig) -> None:
    hub, service = rig
    service.publish_desired(hub.desired(hub.credential("grt-a", PIN), hub.credential("grt-b", PIN)))

    assert states(service, 1) == {"grt-a": "active", "grt-b": "failed:duplicate"}


def test_a_pin_sealed_for_another_credential_fails(rig) -> None:
    hub, service = rig
    moved = hub.credential("grt-other", PIN)
    service.publish_desired(hub.desired({**moved, "id": GRANT}))

    assert states(service, 1) == {GRANT: "failed:seal"}
    assert hub.lock.get_user(1) is None


# --- revocations and refusals ------------------------------------------------------------


def test_a_revoked_token_id_makes_a_valid_grant_refused(rig) -> None:
    hub, service = rig
    token_id = secrets.token_bytes(16)
    revoked = [{"token_id": token_id.hex(), "expires": T + 600}]
    service.publish_desired(hub.desired(revoked_tokens=revoked))
    states(service, 1)

    reply = hub.agent.handle_command(hub.unlock_command(token_id))

    assert isinstance(reply, Reply)
    assert (reply.result, reply.reason) == ("refused", Reason.TOKEN_REVOKED)
    assert hub.lock.unlock_calls == 0
    assert hub.agent.journal.token_used(token_id)  # and never usable later either


@pytest.mark.parametrize("kind", ["another_key", "another_hub", "old_version"])
def test_a_bad_document_changes_nothing(rig, kind) -> None:
    hub, service = rig
    service.publish_desired(hub.desired(hub.credential(GRANT, PIN), version=5))
    before = states(service, 5)

    if kind == "another_key":
        payload = hub.desired(version=6, signer=Ed25519PrivateKey.generate())
        reason = Reason.SHADOW_UNKNOWN_KEY
    elif kind == "another_hub":
        payload = hub.desired(version=6, hub="hub-0000000000000000")
        reason = Reason.SHADOW_WRONG_HUB
    else:
        payload = hub.desired(version=4)
        reason = Reason.SHADOW_STALE
    service.publish_desired(payload)

    refused = hub.wait_for_events(EventKind.SHADOW_REFUSED)
    assert refused[0].data["reason"] == reason
    assert hub.agent.credentials.version == 5
    assert hub.agent.credentials.report().credentials == before
    assert hub.type_code(PIN)["granted"]


def test_the_hub_restarted_keeps_its_applied_version_and_map(rig) -> None:
    hub, service = rig
    service.publish_desired(hub.desired(hub.credential(GRANT, PIN, uses=2)))
    states(service, 1)
    assert hub.type_code(PIN)["granted"]
    hub.door("manual_lock")

    hub.stop()
    hub.boot()  # a new lock that lost its tables: the hub puts the code back in slot 1

    _, report = service.report(lambda r: r["version"] == 1 and r["applied_at"] > 0)
    assert report["credentials"] == {GRANT: "active"}
    assert hub.agent.credentials.version == 1
    assert hub.lock.get_user(1) is not None
    reapplied = hub.events(EventKind.SHADOW_APPLIED)
    assert [event.epoch for event in reapplied] == [1]  # the retained v1 was not re-applied
    assert hub.type_code(PIN)["granted"]  # the second and last use
    service.report(lambda r: r["credentials"] == {GRANT: "cleared"})
    assert hub.type_code(PIN)["error"] == "invalid_credential"


# --- the keypad at the door ----------------------------------------------------------------


# Eight digits without repeats: a four-digit code turns up by chance in an event's random
# entry id, hash or timestamp about once in a hundred runs, which would fail the leak check.
RIGHT_CODE, WRONG_CODE = "47106283", "58203164"


def test_the_wrong_code_lockout_step_by_step_as_tc_drlk_2_2(make_rig) -> None:
    """TC_DRLK_2_2 / 2_3: WrongCodeEntryLimit wrong codes engage the lockout; while it
    lasts even the right code fails; after UserCodeTemporaryDisableTime it works."""
    hub, service = make_rig(
        KeypadDefaults(wrong_code_entry_limit=3, user_code_temporary_disable_seconds=10)
    )
    service.publish_desired(hub.desired(hub.credential(GRANT, RIGHT_CODE)))
    states(service, 1)
    attributes = hub.lock.keypad_attributes()
    assert (attributes.wrong_code_entry_limit, attributes.user_code_temporary_disable_time) == (
        3,
        10,
    )

    # Steps 1-2: wrong codes below the limit are refused and counted.
    for _ in range(2):
        verdict = hub.type_code(WRONG_CODE)
        assert (verdict["error"], verdict["lockout_engaged"]) == ("invalid_credential", False)
    # Step 3: the code that reaches the limit engages the lockout and raises the alarm.
    verdict = hub.type_code(WRONG_CODE)
    assert (verdict["error"], verdict["lockout_engaged"]) == ("invalid_credential", True)
    alarms = hub.events(EventKind.LOCK_ALARM)
    assert [event.data["alarm"] for event in alarms] == [4]  # WrongCodeEntryLimit
    # Step 4: during the lockout the right code fails too.
    assert hub.type_code(RIGHT_CODE)["error"] == "restricted"
    hub.advance(9)
    assert hub.type_code(RIGHT_CODE)["error"] == "restricted"
    # Step 5: after UserCodeTemporaryDisableTime the right code works again.
    hub.advance(1)
    assert hub.type_code(RIGHT_CODE)["granted"]

    refused = hub.events(EventKind.KEYPAD_REFUSED)
    assert [event.data["error"] for event in refused] == [1, 1, 1, 3, 3]
    # During the lockout the keypad judges no code, so it names no user either.
    assert [event.data.get("grant_id") for event in refused] == [None] * 5
    shown = [event.model_dump_json() for event in hub.events()]
    assert not [text for text in shown if RIGHT_CODE in text or WRONG_CODE in text]


def test_a_keypad_entry_is_an_entry_with_its_events(rig) -> None:
    hub, service = rig
    service.publish_desired(hub.desired(hub.credential(GRANT, PIN)))
    states(service, 1)

    assert hub.type_code(PIN)["granted"]
    hub.door("open_door")
    hub.door("close_door")  # the hub relocks at once, then the entry is secured

    unlocked = hub.events(EventKind.LOCK_UNLOCKED)[0].data
    entry_id = unlocked["entry_id"]
    assert entry_id.startswith("ent-")
    assert unlocked == {
        "access_point": DOOR,
        "source": int(OperationSource.KEYPAD),
        "entry_id": entry_id,
        "grant_id": GRANT,
        "method": "keypad",
    }
    kinds = [event.kind for event in hub.events() if event.data.get("entry_id") == entry_id]
    assert kinds == [
        EventKind.LOCK_UNLOCKED,
        EventKind.DOOR_OPENED,
        EventKind.DOOR_CLOSED,
        EventKind.LOCK_LOCKED,
        EventKind.ENTRY_SECURED,
    ]
    assert hub.events(EventKind.ENTRY_SECURED)[0].data["opened"] is True
    assert hub.lock.status().secure
    assert hub.agent.journal.visits() == []


@pytest.mark.slow
def test_a_keypad_entry_is_recorded_from_before_the_unlock(make_rig) -> None:
    """With a camera at the door the entry's clip is armed the moment the code opens the
    lock (the recorder's pre-roll holds the unlock) and closed after the relock."""
    camera = SimulatedCamera(Source.SCENE, width=160, height=120, fps=10)
    camera.start()
    try:
        hub, service = make_rig(camera_url=camera.url)
        recorder = hub.agent.cameras[DOOR]
        wait_until(
            lambda: recorder.liveness().live and recorder.buffered_seconds() >= 2,
            20,
            "the camera to go live with 2 s buffered",
            every=0.1,
        )
        service.publish_desired(hub.desired(hub.credential(GRANT, PIN)))
        states(service, 1)

        typed_at = time.time()  # the recorder keeps wall-clock time; the hub's clock is T
        assert hub.type_code(PIN)["granted"]
        hub.door("open_door")
        hub.door("close_door")

        entry_id = hub.events(EventKind.LOCK_UNLOCKED)[0].data["entry_id"]
        [clip] = hub.wait_for_events(EventKind.CLIP_RECORDED, timeout=30)
        assert clip.data["entry_id"] == entry_id
        assert clip.data["started_at"] < typed_at < clip.data["ended_at"]
    finally:
        camera.stop()


class _RecorderDown:
    """A live camera whose recorder will not open an entry's window (its disk full)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def liveness(self) -> Liveness:
        return Liveness(CameraState.LIVE, 100, 10, "0123456789abcdef", 0.1, 0.0)

    def watch(self, callback: Callable[[Liveness], None]) -> None: ...
    def watch_clips(self, callback: Callable[[Clip], None]) -> None: ...
    def restored(self) -> list[str]:
        return []

    def arm(self, entry_id: str) -> None:
        raise VideoError("the recorder is not running")

    def disarm(self, entry_id: str) -> None:
        raise VideoError(f"entry {entry_id} is not armed")


def test_a_keypad_entry_whose_camera_cannot_record_is_still_watched_and_relocked(rig) -> None:
    """The code has already drawn the bolt: a recorder that fails must not cost the entry
    its record, its relock or its end (the video is lost, the door is not)."""
    hub, service = rig
    hub.agent.cameras[DOOR] = _RecorderDown()
    service.publish_desired(hub.desired(hub.credential(GRANT, PIN)))
    states(service, 1)

    assert hub.type_code(PIN)["granted"]
    [unlocked] = hub.events(EventKind.LOCK_UNLOCKED)
    assert unlocked.data["grant_id"] == GRANT
    entry_id = unlocked.data["entry_id"]
    hub.door("open_door")
    hub.door("close_door")

    assert hub.lock.status().secure
    assert [e.data["entry_id"] for e in hub.events(EventKind.ENTRY_SECURED)] == [entry_id]


def test_a_keypad_entry_left_open_is_secured_after_a_restart(rig) -> None:
    hub, service = rig
    service.publish_desired(hub.desired(hub.credential(GRANT, PIN)))
    states(service, 1)
    hub.type_code(PIN)
    entry_id = hub.events(EventKind.LOCK_UNLOCKED)[0].data["entry_id"]
    assert [visit[1] for visit in hub.agent.journal.visits()] == [entry_id]

    hub.stop()
    hub.boot()  # the (new) simulated lock reports locked and closed

    secured = hub.events(EventKind.ENTRY_SECURED)
    assert [event.data["entry_id"] for event in secured] == [entry_id]


def test_codes_never_reach_the_journal_or_the_store(rig) -> None:
    hub, service = rig
    service.publish_desired(hub.desired(hub.credential(GRANT, "86420135")))
    states(service, 1)
    hub.type_code("86420135")
    hub.type_code("11223344")
    hub.stop()

    for name in ("journal.db", "journal.db-wal", "credentials.db", "credentials.db-wal"):
        path = hub.data_dir / name
        if path.exists():
            content = path.read_bytes()
            assert b"86420135" not in content and b"11223344" not in content, name


def test_revocation_reaches_the_lock_quickly(make_rig) -> None:
    """Revoke -> reported, 20 times: a figure for the log, asserted loosely (the lead's
    bench measures p99 against the 1 s target)."""
    hub, service = make_rig(KeypadDefaults(wrong_code_entry_limit=255))
    latencies = []
    for round_ in range(20):
        pin = f"{1000 + round_}"
        service.publish_desired(hub.desired(hub.credential(f"grt-{round_}", pin)))
        states(service, 2 * round_ + 1)
        sent = service.publish_desired(hub.desired())
        arrived, _ = service.report(applied(2 * round_ + 2))
        latencies.append(arrived - sent)
        assert hub.type_code(pin)["error"] == "invalid_credential"
        hub.door("manual_lock")

    latencies.sort()
    median, worst = latencies[10] * 1000, latencies[-1] * 1000
    print(f"revocation -> reported: median {median:.1f} ms, max {worst:.1f} ms")
    assert latencies[-1] < 3.0


def test_a_code_half_programmed_before_a_crash_is_cleared_and_redone(tmp_path: Path) -> None:
    """The slot is written down before the code reaches the lock: after a crash in
    between, the next start clears that slot and programs the code again."""
    issuer, seal_key = Ed25519PrivateKey.generate(), seal.generate_key()
    hub_id = "hub-0123456789abcdef"
    sealed = seal.seal(seal.public_key_bytes(seal_key), PIN.encode(), hub_id=hub_id, context=GRANT)
    credential = {"id": GRANT, "access_point": DOOR, "name": "Guest", "pin": b64encode(sealed)}
    doc = {"hub": hub_id, "version": 1, "issued_at": T, "timezone": "UTC"}
    payload = sign_shadow({**doc, "credentials": [credential]}, issuer, "k1")
    fingerprint = DesiredDocument.model_validate_json(payload).credentials[0].fingerprint()
    store = CredentialStore(tmp_path / "credentials.db")
    store.save(
        version=1,
        payload=payload,
        held=[HeldCredential(GRANT, DOOR, fingerprint, "programming", slot=3)],
    )
    lock = SimulatedLock(scheduler=ManualScheduler(), clock=lambda: T)
    lock.set_user(3, name="Guest")  # SetUser reached the lock; SetCredential never did
    journal = Journal(tmp_path / "journal.db", hub_id=hub_id, signing_key=issuer)
    manager = CredentialManager(
        hub_id=hub_id,
        store=store,
        locks={DOOR: lock},
        seal_key=seal_key,
        issuer_keys={"k1": public_key_bytes(issuer.public_key())},
        journal=journal,
        clock=lambda: T,
        scheduler=ManualScheduler(),
    )
    assert manager.report().credentials == {GRANT: "failed:interrupted"}

    manager.start()

    assert manager.report().credentials == {GRANT: "active"}
    assert lock.get_user(3) is None
    assert manager.credential_at(DOOR, 1) == GRANT
    assert lock.keypad_entry(PIN).error is None
    manager.stop()
    journal.close()
    lock.close()
