"""Keypad codes for guests and providers: from the signed desired shadow onto the locks.

The service publishes the COMPLETE set of codes the hub must hold (`protocol.shadow`),
retained on `doorstep/hubs/{hub}/desired`. `CredentialManager.apply` verifies it (a
trusted issuer key, this hub), ignores a version at or below the applied one, trusts the
issuer keys it names (if it names them: saved through `trust_issuer_keys` before anything
else of it is applied, so an older version can never bring a retired key back), and then
brings every lock to it:
- a code no longer in the set is cleared from its lock at once (revocation);
- a new or changed code is programmed through the lock's `KeypadLock` capability, one
  Matter user per code (user index = PIN credential index): SetUser with the user type
  its schedules call for, SetCredential, then its week-day and year-day schedules;
- a code is programmed only from `valid_from` (a timer; `scheduled` until then) and
  cleared at `valid_until` or when its uses are spent (`cleared`);
- revoked grant token ids are refused from then on (`Reason.TOKEN_REVOKED`);
then the `reported` document goes out (retained). Failures, per code: `no_keypad` (the
door's driver has no `KeypadLock`), `unknown_access_point`, `seal` (the PIN does not open
for this hub and id), `bad_pin` (not 4-8 digits), `resource_exhausted` (no free slot),
`lock_unreachable` (retried), `interrupted` (a crash mid-programming; cleared and redone
on start), or the lock's own refusal in Matter's words (`duplicate`, `occupied`,
`invalid_command`, ...), as `failed:<reason>`.

`valid_from`/`valid_until` are the hub's timers; the lock itself holds only the week-day
and year-day schedules. A hub that is down at `valid_until` clears the code when it
starts again.

A document applied under another hub id (the data directory enrolled again, as a new
hub) is not this hub's: on start its codes are cleared and versions count from 0 again.

Fail closed: a code the hub could not take off a lock (lock offline) stays in the report
as `failed:<reason>` and is retried every `RETRY_SECONDS` until it is gone. Before a code
is programmed its slot is written down, so a crash half-way leaves a slot the next start
clears rather than a code nobody knows about.

Slots: a keypad lock event names only the lock user (`user_index`), and is credited to
the code in that slot when it arrives (`credential_at`). So a slot a code has just left is
the last one given to another code (`_free_slot`): a late event for the old code then
finds nobody in it rather than the new code.

Uses: `uses` in the document is what the service knows is left; the hub counts down
itself (`record_use`) and keeps the smaller of the two for an unchanged code. A single-use
code without schedules is a Matter DISPOSABLE user; one with schedules keeps its schedule
type (DISPOSABLE would ignore the schedules) and is cleared by the hub after its use.

PINs are opened from their seal only in memory, to program them; they are never logged,
journalled, stored or put into an exception.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from doorstep.hub.credential_store import CredentialStore, FreedSlot, HeldCredential
from doorstep.hub.journal import Journal
from doorstep.hub.keypad import (
    DaysMask,
    KeypadError,
    KeypadLimits,
    KeypadLock,
    UserType,
    local_epoch_seconds,
)
from doorstep.hub.lock import LockDriver, LockError
from doorstep.hub.scheduling import Cancellable, Scheduler, ThreadScheduler
from doorstep.protocol.codes import Reason
from doorstep.protocol.messages import EventKind
from doorstep.protocol.seal import SealError, open_sealed
from doorstep.protocol.shadow import (
    CredentialState,
    DesiredCredential,
    DesiredDocument,
    ReportedDocument,
    RevokedToken,
    ShadowRefused,
    failed,
    verify_shadow,
)

log = logging.getLogger(__name__)

RETRY_SECONDS = 10.0
# Revoked token ids are kept this long past their expiry (grants have 30 s of leeway).
REVOCATION_LEEWAY_SECONDS = 120
_PROGRAMMING = "programming"  # a slot written down before its code; never reported as such
_KEYPAD_METHODS = (
    "set_user",
    "clear_user",
    "set_pin",
    "set_week_day_schedule",
    "set_year_day_schedule",
)

Record = Callable[[EventKind, dict[str, Any]], object]
Publish = Callable[[bytes], None]


@dataclass(frozen=True)
class KeypadDefaults:
    """Matter WrongCodeEntryLimit and UserCodeTemporaryDisableTime, set on every lock."""

    wrong_code_entry_limit: int = 5
    user_code_temporary_disable_seconds: int = 60


class _BadPin(Exception):
    """The opened PIN is not 4-8 ASCII digits; the reason is all that leaves."""


class CredentialManager:
    """Holds the keypad codes of one hub's locks in line with the applied desired document.

    Threads: documents from MQTT are applied on a thread of their own (`submit`), timers
    on the scheduler's; both change state under one mutex, and never call back into the
    agent but through `record` and `publish`. What the agent asks on its hot paths
    (`credential_at`, `is_revoked`) reads maps that are replaced whole, without the mutex,
    so an unlock never waits for a lock being programmed.
    """

    def __init__(
        self,
        *,
        hub_id: str,
        store: CredentialStore,
        locks: Mapping[str, LockDriver],
        seal_key: X25519PrivateKey,
        issuer_keys: Mapping[str, bytes],
        journal: Journal,
        clock: Callable[[], float],
        scheduler: Scheduler | None = None,
        keypad: KeypadDefaults | None = None,
        trust_issuer_keys: Callable[[dict[str, bytes]], None] = lambda _keys: None,
    ) -> None:
        """`issuer_keys`: the keys the hub trusts now. `trust_issuer_keys` is called with
        those of a document being applied, before anything else of it: it saves them
        durably and hands them to the grant verifier; if it raises, the document is not
        applied."""
        self.hub_id = hub_id
        self._store = store
        self._locks = locks
        self._seal_key = seal_key
        self._issuer_keys = dict(issuer_keys)
        self._trust_issuer_keys = trust_issuer_keys
        self._journal = journal
        self._clock = clock
        self._scheduler = scheduler or ThreadScheduler()
        self._keypad = keypad or KeypadDefaults()
        self._record: Record = lambda _kind, _data: None
        self._publish: Publish = lambda _body: None
        self._mutex = threading.RLock()
        self._stopped = False
        self._held = store.held()
        self._slots: dict[tuple[str, int], str] = {
            (held.access_point, held.slot): held.id
            for held in self._held.values()
            if held.slot is not None
        }
        self._dropped: set[str] = set()
        self._freed = {(f.access_point, f.slot): f for f in store.freed_slots()}
        self._freed_unsaved: list[FreedSlot] = []
        self._revoked = store.revoked()
        self._timers: dict[str, Cancellable] = {}
        self._retry: Cancellable | None = None
        self._inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._applier: threading.Thread | None = None
        self.version, payload = store.applied()
        self._applied_at = 0.0
        self._desired: dict[str, DesiredCredential] = {}
        self._zone: ZoneInfo | None = None
        if payload is not None:
            doc = DesiredDocument.model_validate_json(payload)
            if doc.hub == hub_id:
                self._desired = {credential.id: credential for credential in doc.credentials}
                self._zone = doc.zone
            else:  # enrolled again as another hub: its versions start over, its codes go
                log.warning("applied document is for %s, not %s: dropped", doc.hub, hub_id)
                self.version = 0

    def attach(self, *, record: Record, publish: Publish) -> None:
        """Where events go (the agent's journal) and where `reported` is published."""
        self._record, self._publish = record, publish

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Set the locks' lockout, then catch up with time: program what became due while
        the hub was down, clear what expired, re-program what a lock lost, re-arm timers."""
        with self._mutex:
            for driver in self._locks.values():
                self._configure(driver)
            if self._zone is not None:
                self._set_zone(self._zone)
            self._settle_all(verify=True)
            self._persist()
        self.publish_report()
        self._applier = threading.Thread(target=self._apply_loop, name="shadow", daemon=True)
        self._applier.start()

    def stop(self) -> None:
        self._inbox.put(None)
        if self._applier is not None:
            self._applier.join(timeout=5)
        with self._mutex:
            self._stopped = True
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            if self._retry is not None:
                self._retry.cancel()
            self._store.close()

    # --- the desired document ------------------------------------------------------------

    def submit(self, payload: bytes) -> None:
        """Queue a desired document for the apply thread: the MQTT thread that received it
        must not wait on a slow lock (it also carries the unlock commands)."""
        self._inbox.put(payload)

    def _apply_loop(self) -> None:
        while (payload := self._inbox.get()) is not None:
            try:
                self.apply(payload)
            except Exception:  # the process edge: log, keep the last applied state
                log.exception("applying a desired document failed")

    def apply(self, payload: bytes) -> ReportedDocument | None:
        """Apply a desired document; the new report, or None when nothing changed."""
        try:
            doc = verify_shadow(payload, self._issuer_keys, self.hub_id)
        except ShadowRefused as refused:
            log.warning("desired document refused: %s", refused.reason)
            self._record(EventKind.SHADOW_REFUSED, {"reason": refused.reason})
            return None
        with self._mutex:
            if self._stopped:
                return None
            if doc.version <= self.version:
                if doc.version < self.version:  # the same version is a retained redelivery
                    self._record(
                        EventKind.SHADOW_REFUSED,
                        {"reason": Reason.SHADOW_STALE, "version": doc.version},
                    )
                return None
            keys = doc.trusted_keys()
            if keys is not None and keys != self._issuer_keys:
                self._trust_issuer_keys(keys)
                self._issuer_keys = keys
                log.info("issuer keys trusted from version %d: %s", doc.version, ", ".join(keys))
            self._revoke(doc.revoked_tokens)
            self._desired = {credential.id: credential for credential in doc.credentials}
            # The new target is written down before any lock is touched: a crash while
            # settling resumes towards it on start, never back to the codes it revoked.
            self.version = doc.version
            self._persist(payload)
            self._set_zone(doc.zone)
            self._settle_all()
            self._persist()
            report = self.report()
        self._publish(report.to_bytes())
        self._record(
            EventKind.SHADOW_APPLIED, {"version": doc.version, "credentials": report.credentials}
        )
        return report

    def report(self) -> ReportedDocument:
        with self._mutex:
            states = {
                held.id: failed("interrupted") if held.state == _PROGRAMMING else held.state
                for held in self._held.values()
            }
            return ReportedDocument(
                hub=self.hub_id,
                version=self.version,
                applied_at=self._applied_at,
                credentials=states,
            )

    def publish_report(self) -> None:
        self._publish(self.report().to_bytes())

    # --- what the agent asks ------------------------------------------------------------

    def credential_at(self, access_point: str, user_index: int | None) -> str | None:
        """The credential whose code is lock user `user_index` at `access_point`, if any.

        The slot as it is now: an event that arrives after its slot went to another code
        is credited to that code (`_free_slot` makes this rare, not impossible).

        No mutex: lock events ask this while an apply may be waiting on a slow lock; the
        map is rebuilt whole under the mutex after every change (`_persist`)."""
        if user_index is None:
            return None
        return self._slots.get((access_point, user_index))

    def record_use(self, credential_id: str) -> None:
        """A code opened the door: count the use; clear the code once its uses are spent."""
        with self._mutex:
            held = self._held.get(credential_id)
            if self._stopped or held is None or held.uses is None:
                return
            held.uses = max(0, held.uses - 1)
            desired = self._desired.get(credential_id)
            if held.uses == 0 and desired is not None:
                self._settle(desired)
            self._persist()
        self.publish_report()

    def is_revoked(self, token_id: bytes) -> bool:
        # No mutex: an unlock must not wait for a long apply; the map is replaced, not edited.
        return token_id in self._revoked

    # --- bringing one credential to its target state -----------------------------------

    def _settle_all(self, *, verify: bool = False) -> None:
        # Revocations first: they are the urgent part, and free PINs and slots for the rest.
        for credential_id in [i for i in self._held if i not in self._desired]:
            self._remove(credential_id)
        for desired in self._desired.values():
            self._settle(desired, verify=verify)

    def _settle(self, desired: DesiredCredential, *, verify: bool = False) -> None:
        held = self._held.get(desired.id)
        fingerprint = desired.fingerprint()
        same = (
            held is not None
            and held.fingerprint == fingerprint
            and held.access_point == desired.access_point
        )
        if held is not None and held.slot is not None:
            stale = (
                not same or held.state != CredentialState.ACTIVE or (verify and self._lost(held))
            )
            if stale and not self._take_off(held):
                return  # still on the lock: retried; never program over it
        if held is None or not same:
            uses = desired.uses
            held = HeldCredential(desired.id, desired.access_point, fingerprint, "")
        else:
            uses = _fewer(held.uses, desired.uses)  # the hub may have counted uses since
        held.uses = uses
        self._held[desired.id] = held
        target = self._target(desired, uses)
        if target != CredentialState.ACTIVE:
            if self._take_off(held):
                held.state = target
        elif held.slot is None:
            self._program(desired, held)
        self._arm(desired, held)
        self._applied_at = self._clock()

    def _target(self, desired: DesiredCredential, uses: int | None) -> str:
        now = self._clock()
        if uses == 0 or (desired.valid_until is not None and now >= desired.valid_until):
            return CredentialState.CLEARED
        problem = self._problem(desired.access_point)
        if problem is not None:
            return failed(problem)
        if desired.valid_from is not None and now < desired.valid_from:
            return CredentialState.SCHEDULED
        return CredentialState.ACTIVE

    def _remove(self, credential_id: str) -> None:
        """A code no longer in the document: off the lock now (a revocation)."""
        held = self._held[credential_id]
        self._cancel_timer(credential_id)
        if self._take_off(held):
            del self._held[credential_id]
            self._dropped.add(credential_id)
            self._applied_at = self._clock()

    def _take_off(self, held: HeldCredential) -> bool:
        """Clear the code's lock user (and with it its PIN and schedules); False if the
        lock refused or could not be reached, in which case a retry is scheduled."""
        if held.slot is None:
            return True
        driver = self._locks.get(held.access_point)
        if driver is not None:
            try:
                _keypad(driver).clear_user(held.slot)
            except (KeypadError, LockError) as exc:
                log.warning("could not clear %s at %s: %s", held.id, held.access_point, exc)
                held.state = failed(_reason(exc))
                self._schedule_retry()
                return False
        log.info("keypad user %d cleared at %s (%s)", held.slot, held.access_point, held.id)
        self._note_freed(held.access_point, held.slot, held.id)
        held.slot = None
        return True

    def _note_freed(self, access_point: str, slot: int, credential_id: str) -> None:
        """Remember the slot as the most recently freed; written with the next `_persist`,
        in the transaction that takes it from its credential."""
        seq = max((freed.seq for freed in self._freed.values()), default=0) + 1
        freed = FreedSlot(access_point, slot, seq, credential_id)
        self._freed[(access_point, slot)] = freed
        self._freed_unsaved.append(freed)

    def _program(self, desired: DesiredCredential, held: HeldCredential) -> None:
        driver = _keypad(self._locks[desired.access_point])
        try:
            slot = self._free_slot(desired.access_point, driver, desired.id)
        except (KeypadError, LockError) as exc:
            held.state = failed(_reason(exc))
            self._schedule_retry()
            return
        if slot is None:
            held.state = failed("resource_exhausted")
            return
        try:
            pin = self._open_pin(desired)
        except SealError:
            held.state = failed("seal")
            return
        except _BadPin:
            held.state = failed("bad_pin")
            return
        held.slot, held.state = slot, _PROGRAMMING
        self._persist()  # the slot is written down before anything reaches the lock
        try:
            _write(driver, slot, desired, pin, held.uses)
        except (KeypadError, LockError) as exc:
            log.warning("could not program %s at %s: %s", desired.id, desired.access_point, exc)
            if self._take_off(held):
                held.state = failed(_reason(exc))
            if isinstance(exc, LockError):
                self._schedule_retry()  # the lock may come back; a refusal would not change
            return
        held.state = CredentialState.ACTIVE
        log.info("keypad user %d programmed at %s (%s)", slot, desired.access_point, desired.id)

    def _open_pin(self, desired: DesiredCredential) -> str:
        try:
            sealed = desired.sealed_pin()
        except ValueError as exc:
            raise SealError("sealed PIN is not base64url") from exc
        raw = open_sealed(self._seal_key, sealed, hub_id=self.hub_id, context=desired.id)
        if not (4 <= len(raw) <= 8 and raw.isascii() and raw.isdigit()):
            raise _BadPin
        return raw.decode("ascii")

    def _free_slot(self, access_point: str, driver: KeypadLock, credential_id: str) -> int | None:
        """A slot for `credential_id`'s code: one never freed, or last held by this same
        credential, first (lowest index first); else the least recently freed. None when
        every slot is taken (by our codes, or by codes set at the lock itself).

        Why: lock events carry no time, so the hub cannot tell a late event for a code it
        has just cleared (the lock reports the unlock after the slot was reprogrammed)
        from one for the slot's new code; it credits the slot's holder. Reusing the least
        recently freed slot keeps a freed slot empty as long as any other is free. What
        is left: when every other slot is in use the just-freed one is taken at once (a
        lock with a single slot always does), and a slot freed long ago is reused once
        the others have had their turn, so an event delayed past that is credited to
        the new code. Slots freed before the order was kept count as never freed. The
        order is written in the transaction that releases the slot, so a restart keeps
        it."""
        limits = (
            driver.keypad_attributes().limits
            if callable(getattr(driver, "keypad_attributes", None))
            else KeypadLimits()
        )
        ours = {h.slot for h in self._held.values() if h.access_point == access_point}
        free = [
            index
            for index in range(1, min(limits.total_users, limits.pin_credentials) + 1)
            if index not in ours
        ]

        def reuse_order(index: int) -> tuple[int, int]:
            freed = self._freed.get((access_point, index))
            if freed is None or freed.credential_id == credential_id:
                return (0, index)  # no other code of ours has left this slot
            return (freed.seq, index)

        for index in sorted(free, key=reuse_order):
            if not _occupied(driver, index):  # asked in that order: each is a round trip
                return index
        return None

    def _lost(self, held: HeldCredential) -> bool:
        """Whether the lock no longer holds the code (a lock reset, a simulated restart)."""
        driver = self._locks.get(held.access_point)
        if driver is None or held.slot is None or not callable(getattr(driver, "get_pin", None)):
            return False
        try:
            return _keypad(driver).get_pin(held.slot) is None
        except (KeypadError, LockError):
            return False

    def _problem(self, access_point: str) -> str | None:
        driver = self._locks.get(access_point)
        if driver is None:
            return "unknown_access_point"
        if not all(callable(getattr(driver, name, None)) for name in _KEYPAD_METHODS):
            return "no_keypad"
        return None

    # --- timers ----------------------------------------------------------------------------

    def _arm(self, desired: DesiredCredential, held: HeldCredential) -> None:
        self._cancel_timer(desired.id)
        due = None
        if held.state == CredentialState.SCHEDULED:
            due = desired.valid_from
        elif held.state == CredentialState.ACTIVE:
            due = desired.valid_until
        if due is not None and not self._stopped:
            delay = max(0.0, due - self._clock())
            self._timers[desired.id] = self._scheduler.call_later(
                delay, lambda: self._on_due(desired.id)
            )

    def _cancel_timer(self, credential_id: str) -> None:
        timer = self._timers.pop(credential_id, None)
        if timer is not None:
            timer.cancel()

    def _on_due(self, credential_id: str) -> None:
        with self._mutex:
            desired = self._desired.get(credential_id)
            if self._stopped or desired is None:
                return
            self._timers.pop(credential_id, None)
            self._settle(desired)
            self._persist()
        self.publish_report()

    def _schedule_retry(self) -> None:
        if self._retry is None and not self._stopped:
            self._retry = self._scheduler.call_later(RETRY_SECONDS, self._on_retry)

    def _on_retry(self) -> None:
        with self._mutex:
            self._retry = None
            if self._stopped:
                return
            self._settle_all()
            self._persist()
        self.publish_report()

    # --- locks, revocations, persistence ---------------------------------------------------

    def _configure(self, driver: LockDriver) -> None:
        if not callable(getattr(driver, "set_wrong_code_entry_limit", None)):
            return
        keypad = _keypad(driver)
        try:
            keypad.set_wrong_code_entry_limit(self._keypad.wrong_code_entry_limit)
            keypad.set_user_code_temporary_disable_time(
                self._keypad.user_code_temporary_disable_seconds
            )
        except (KeypadError, LockError) as exc:
            log.warning("could not set the keypad lockout: %s", exc)

    def _set_zone(self, zone: ZoneInfo) -> None:
        self._zone = zone
        for driver in self._locks.values():
            set_time_zone = getattr(driver, "set_time_zone", None)
            if callable(set_time_zone):
                set_time_zone(zone)

    def _revoke(self, tokens: Iterable[RevokedToken]) -> None:
        now = self._clock()
        cutoff = int(now) - REVOCATION_LEEWAY_SECONDS
        fresh = [
            (bytes.fromhex(token.token_id), token.expires)
            for token in tokens
            if token.expires >= cutoff and bytes.fromhex(token.token_id) not in self._revoked
        ]
        self._store.revoke(fresh)
        self._store.forget_revocations_expired_before(cutoff)
        kept = {t: e for t, e in self._revoked.items() if e >= cutoff}
        self._revoked = {**kept, **dict(fresh)}  # replaced whole: `is_revoked` reads unlocked
        for token_id, expires in fresh:
            self._journal.use_token(token_id, expires=expires, now=now)  # used = never again

    def _persist(self, payload: bytes | None = None) -> None:
        self._slots = {
            (held.access_point, held.slot): held.id
            for held in self._held.values()
            if held.slot is not None
        }
        self._store.save(
            version=self.version if payload is not None else None,
            payload=payload,
            held=list(self._held.values()),
            dropped=sorted(self._dropped),
            freed=self._freed_unsaved,
        )
        self._dropped.clear()
        self._freed_unsaved = []


def _write(
    driver: KeypadLock, slot: int, desired: DesiredCredential, pin: str, uses: int | None
) -> None:
    driver.set_user(slot, name=desired.name, user_type=_user_type(desired, uses))
    driver.set_pin(slot, pin, user_index=slot)
    for index, week in enumerate(desired.week_days, start=1):
        driver.set_week_day_schedule(
            index, slot, DaysMask(week.days), week.start_time, week.end_time
        )
    for index, year in enumerate(desired.year_days, start=1):
        driver.set_year_day_schedule(
            index, slot, local_epoch_seconds(year.start_local), local_epoch_seconds(year.end_local)
        )


def _user_type(desired: DesiredCredential, uses: int | None) -> UserType:
    if desired.week_days and desired.year_days:
        return UserType.SCHEDULE_RESTRICTED
    if desired.week_days:
        return UserType.WEEK_DAY_SCHEDULE
    if desired.year_days:
        return UserType.YEAR_DAY_SCHEDULE
    if uses == 1:
        return UserType.DISPOSABLE
    return UserType.UNRESTRICTED


def _occupied(driver: KeypadLock, index: int) -> bool:
    """A slot someone else filled (a code set at the lock itself) is not ours to take."""
    if callable(getattr(driver, "get_user", None)) and driver.get_user(index) is not None:
        return True
    return callable(getattr(driver, "get_pin", None)) and driver.get_pin(index) is not None


def _keypad(driver: LockDriver) -> KeypadLock:
    return cast(KeypadLock, driver)


def _fewer(held: int | None, desired: int | None) -> int | None:
    if held is None:
        return desired
    if desired is None:
        return held
    return min(held, desired)


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeypadError):
        return exc.status.name.lower()
    return "lock_unreachable"
