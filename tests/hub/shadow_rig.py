"""A hub with keypad credentials on a real Mosquitto, and the service's side of the shadow.

`ShadowRig` runs one `HubAgent` with a `CredentialManager`, a simulated lock at `front`
and its simcontrol socket, connected as its own hub user; `service` is an MQTT client
with the service's credentials that signs and publishes desired documents (retained)
and collects what the hub reports. Time is a `ManualScheduler`: the hub's clock, the
lock's wall clock and every timer read `T + scheduler.now`, so a test moves the day on
with `advance()` instead of sleeping. The network is real; waits are bounded.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from doorstep.broker import Mosquitto
from doorstep.hub import simcontrol
from doorstep.hub.agent import HubAgent
from doorstep.hub.camera import EntryCamera, RecorderCamera
from doorstep.hub.credential_store import CredentialStore
from doorstep.hub.credentials import CredentialManager, KeypadDefaults
from doorstep.hub.drivers.simulated import SimulatedLock
from doorstep.hub.journal import Journal
from doorstep.hub.lock import LockDriver
from doorstep.hub.scheduling import ManualScheduler
from doorstep.protocol import PROTOCOL_VERSION, Topics, seal
from doorstep.protocol.grants import (
    GrantClaims,
    GrantSigner,
    GrantVerifier,
    audience_for,
    key_id_for,
    public_key_bytes,
)
from doorstep.protocol.messages import Command, CommandKind, Event, b64encode
from doorstep.protocol.mqtt import BrokerAddress
from doorstep.protocol.shadow import sign_shadow
from polling import poll

T = 1_800_000_000  # Friday 2027-01-15, 08:00 UTC: 09:00 in Paris
DOOR = "front"
TIMEOUT = 5.0


class ServiceSide:
    """The service's MQTT client for one hub: publishes desired, collects reported/events."""

    def __init__(self, broker: Mosquitto, hub_id: str) -> None:
        self.topics = Topics(hub_id)
        self.reports: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self._client.username_pw_set(broker.service_user, broker.service_password)
        self._client.on_message = self._on_message
        # As in production (DESIGN "Known traps"): without it each publish waits on Nagle.
        self._client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_args: subscribed.set()
        self._client.connect(broker.host, broker.port, clean_start=True)
        self._client.loop_start()
        self._client.subscribe(self.topics.reported, qos=1)
        assert subscribed.wait(TIMEOUT)

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        if message.payload:
            self.reports.put((time.monotonic(), orjson.loads(message.payload)))

    def publish_desired(self, payload: bytes) -> float:
        """Publish (retained, QoS 1); returns the monotonic time just before sending."""
        sent = time.monotonic()
        info = self._client.publish(self.topics.desired, payload, qos=1, retain=True)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()
        return sent

    def report(self, until: Callable[[dict[str, Any]], bool]) -> tuple[float, dict[str, Any]]:
        """The first reported document (and when it arrived) that satisfies `until`."""
        for at, report in self.seen:
            if until(report):
                return at, report
        deadline = time.monotonic() + TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                at, report = self.reports.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append((at, report))
            if until(report):
                return at, report
        raise AssertionError(f"no matching report; saw {[r for _, r in self.seen]}")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._client.reinitialise()


@dataclass
class ShadowRig:
    data_dir: Path
    broker: Mosquitto
    hub_id: str
    password: str
    issuer: Ed25519PrivateKey
    keypad: KeypadDefaults
    extra_locks: dict[str, LockDriver] = field(default_factory=dict)
    camera_url: str | None = None  # a recorder on this URL watches the front door
    scheduler: ManualScheduler = field(default_factory=ManualScheduler)
    hub_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    seal_key: X25519PrivateKey = field(default_factory=seal.generate_key)
    agent: HubAgent | None = None
    lock: SimulatedLock | None = None
    control: simcontrol.SimControl | None = None
    _versions: int = 0

    @property
    def kid(self) -> str:
        return key_id_for(self.issuer.public_key())

    def now(self) -> float:
        return T + self.scheduler.now

    def boot(self) -> HubAgent:
        """Start (or start again) the hub on its data dir, with a fresh simulated lock."""
        journal = Journal(
            self.data_dir / "journal.db", hub_id=self.hub_id, signing_key=self.hub_key
        )
        self.lock = SimulatedLock(scheduler=self.scheduler, clock=self.now, motor_seconds=0)
        locks: dict[str, LockDriver] = {DOOR: self.lock, **self.extra_locks}
        issuer_keys = {self.kid: public_key_bytes(self.issuer.public_key())}
        credentials = CredentialManager(
            hub_id=self.hub_id,
            store=CredentialStore(self.data_dir / "credentials.db"),
            locks=locks,
            seal_key=self.seal_key,
            issuer_keys=issuer_keys,
            journal=journal,
            clock=self.now,
            scheduler=self.scheduler,
            keypad=self.keypad,
        )
        verifier = GrantVerifier(hub_id=self.hub_id, issuer_keys=issuer_keys, clock=self.now)
        cameras: dict[str, EntryCamera] = {}
        if self.camera_url is not None:
            cameras[DOOR] = RecorderCamera(self.camera_url, self.data_dir / "video" / DOOR)
        self.agent = HubAgent(
            hub_id=self.hub_id,
            journal=journal,
            locks=locks,
            verifier=verifier,
            clock=self.now,
            scheduler=self.scheduler,
            credentials=credentials,
            cameras=cameras,
        )
        self.control = simcontrol.SimControl(self.data_dir / "sim.sock", {DOOR: self.lock})
        self.control.start()
        self.agent.start(
            BrokerAddress(self.broker.host, self.broker.port, self.hub_id, self.password)
        )
        return self.agent

    def stop(self) -> None:
        if self.control is not None:
            self.control.stop()
            self.control = None
        if self.agent is not None:
            self.agent.stop()
            self.agent = None

    # --- the service's documents --------------------------------------------------------

    def credential(self, credential_id: str, pin: str, **changes: Any) -> dict[str, Any]:
        sealed = seal.seal(
            seal.public_key_bytes(self.seal_key),
            pin.encode(),
            hub_id=self.hub_id,
            context=credential_id,
        )
        values: dict[str, Any] = {
            "id": credential_id,
            "access_point": DOOR,
            "name": "Guest",
            "pin": b64encode(sealed),
            "valid_from": None,
            "valid_until": None,
            "week_days": [],
            "year_days": [],
            "uses": None,
        }
        return {**values, **changes}

    def desired(
        self,
        *credentials: dict[str, Any],
        version: int | None = None,
        signer: Ed25519PrivateKey | None = None,
        **changes: Any,
    ) -> bytes:
        if version is None:
            self._versions += 1
            version = self._versions
        doc: dict[str, Any] = {
            "v": 1,
            "hub": self.hub_id,
            "version": version,
            "issued_at": int(self.now()),
            "timezone": "Europe/Paris",
            "credentials": list(credentials),
            "revoked_tokens": [],
            **changes,
        }
        key = signer or self.issuer
        return sign_shadow(doc, key, key_id_for(key.public_key()) if signer else self.kid)

    # --- the world --------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.scheduler.advance(seconds)

    def type_code(self, pin: str) -> dict[str, Any]:
        """A person at the front door types `pin`; the simulated lock's verdict."""
        answer = simcontrol.send(self.data_dir / "sim.sock", "keypad", DOOR, pin=pin)
        assert answer["ok"], answer
        verdict: dict[str, Any] = answer["verdict"]
        return verdict

    def door(self, op: str) -> dict[str, Any]:
        answer = simcontrol.send(self.data_dir / "sim.sock", op, DOOR)
        assert answer["ok"], answer
        return answer

    def events(self, kind: str | None = None) -> list[Event]:
        assert self.agent is not None
        events = self.agent.journal.unacknowledged(limit=10_000)
        return [event for event in events if kind is None or event.kind == kind]

    def wait_for_events(self, kind: str, count: int = 1, timeout: float = TIMEOUT) -> list[Event]:
        found = poll(lambda: self.events(kind), lambda seen: len(seen) >= count, timeout, 0.01)
        assert len(found) >= count, f"expected {count} {kind}, saw {found}"
        return found

    def unlock_command(self, token_id: bytes) -> bytes:
        claims = GrantClaims(
            audience=audience_for(self.hub_id, DOOR),
            not_before=T,
            expires=T + 600,
            issued_at=T,
            token_id=token_id,
            scope=("unlock",),
            entry_id="ent-0123456789abcdef",
        )
        token = GrantSigner(self.issuer).sign(claims)
        command = Command(
            v=PROTOCOL_VERSION,
            command_id="cmd-00000001",
            kind=CommandKind.UNLOCK,
            not_after=T + 30,
            entry_id=claims.entry_id,
            access_point=DOOR,
            grant=b64encode(token),
        )
        return command.model_dump_json().encode()


__all__ = ["DOOR", "ServiceSide", "ShadowRig", "T"]
