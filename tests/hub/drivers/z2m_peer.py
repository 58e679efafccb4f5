"""A test peer that plays Zigbee2MQTT 2.x and its devices on a real broker.

It publishes what Zigbee2MQTT publishes, in its shapes: `bridge/state` (retained, and
its last will), `bridge/devices` (retained, the golden list in fixtures/), per-device
`availability` (retained) and device states. State fragments are the golden outputs of
the real zigbee-herdsman-converters converters (fixtures/z2m_converted.json); like
Zigbee2MQTT, the peer merges each fragment into the device's cached state, publishes the
merged state with sorted keys, and never caches `action`/`action_*`.

The sensor is configured with Zigbee2MQTT's device option `retain: true` (`retained`),
so its state is retained, as a deployment must do for a sleepy sensor.

It answers `<device>/set` and `<device>/get` as Zigbee2MQTT and a Yale YRD256 would:
after `motor_seconds`, an unlock sends the operation event (`action: "unlock"`, source
"rf") and then the attribute report (`lock_state: "unlocked"`). `script` makes a lock
jam or stay silent on a command, which is how tests inject faults. While a device is
unavailable it answers nothing, as a lock off the mesh would. Keypad codes it receives
are kept only in `received`, never logged.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from doorstep.protocol.mqtt import BrokerAddress, close, connect, make_client

FIXTURES = Path(__file__).parent / "fixtures"
LOCK = "front_door"  # Yale YRD256HA20BP: jams report lock_state "not_fully_locked"
ALARM_LOCK = "back_door"  # Yale YAYRD256HA2619: jams also report action "error_jammed"
SENSOR = "front_door_contact"  # SONOFF SNZB-04
LINKQUALITY = 142
PIN_CODE_COUNT = 250  # the Yale definitions' meta.pinCodeCount


def load_bridge_devices() -> list[dict[str, Any]]:
    devices: list[dict[str, Any]] = json.loads((FIXTURES / "z2m_bridge_devices.json").read_text())
    return devices


def load_fragments() -> dict[str, dict[str, Any]]:
    fragments: dict[str, Any] = json.loads((FIXTURES / "z2m_converted.json").read_text())
    fragments.pop("_source")
    return fragments


@dataclass(frozen=True)
class Received:
    """One command the peer received: `<device>/<leaf>` with its JSON body."""

    device: str
    leaf: str
    body: Any


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _cacheable(state: dict[str, Any]) -> dict[str, Any]:
    # Zigbee2MQTT's state cache drops these (lib/state.ts CACHE_IGNORE_PROPERTIES).
    return {k: v for k, v in state.items() if k != "action" and not k.startswith("action_")}


class Z2mPeer:
    """Zigbee2MQTT, a Yale lock or two and a contact sensor, on `base_topic`."""

    def __init__(
        self, address: BrokerAddress, base_topic: str, *, motor_seconds: float = 0.05
    ) -> None:
        self.base = base_topic
        self.motor_seconds = motor_seconds
        self.fragments = load_fragments()
        self.script: dict[tuple[str, str], str] = {}  # (device, "LOCK"|"UNLOCK") -> mode
        self.available = {LOCK: True, ALARM_LOCK: True, SENSOR: True}
        # Zigbee2MQTT's per-device `retain: true` option: how a sleepy contact sensor's
        # last state reaches a hub that connects after it reported.
        self.retained = {SENSOR}
        self.received: list[Received] = []
        self.errors: list[str] = []
        self._address = address
        self._cache: dict[str, dict[str, Any]] = {}
        self._slots: dict[str, dict[int, str]] = {LOCK: {}, ALARM_LOCK: {}}  # the locks' memory
        self._changed = threading.Condition()
        self._timers: list[threading.Timer] = []
        self._stopping = False  # set under `_reporting`: a motor timer already running
        # when the test ends must not publish on a closed client
        self._reporting = threading.Lock()
        self._client: paho.Client | None = None
        self._network_thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Connect (with Zigbee2MQTT's last will), publish the retained topics and
        the devices' cached states, as Zigbee2MQTT does when it starts."""
        offline = json.dumps({"state": "offline"}).encode()
        client = make_client("z2m-peer", self._address, will=(self.topic("bridge/state"), offline))
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        connect(client, self._address)
        self._client = client
        f = self.fragments
        self._cache[LOCK] = _deep_merge(f["lock_read_all"], f["battery"])
        self._cache[ALARM_LOCK] = _deep_merge(f["lock_read_all"], f["battery"])
        self._cache[SENSOR] = _deep_merge(f["contact_closed"], f["contact_battery"])
        self.publish("bridge/state", {"state": "online"}, retain=True)
        self.publish("bridge/devices", load_bridge_devices(), retain=True)
        for device in self.available:
            self.set_available(device, True)
            self.report(device)

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        self._network_thread = threading.current_thread()
        client.subscribe([(self.topic("+/set"), 1), (self.topic("+/get"), 1)])

    def stop(self) -> None:
        with self._reporting:
            self._stopping = True
        for timer in self._timers:
            timer.cancel()
        if self._client is not None:
            close(self._client)
            self._client = None

    # --- publishing ---------------------------------------------------------------------

    def topic(self, leaf: str) -> str:
        return f"{self.base}/{leaf}"

    def publish(self, leaf: str, document: Any, *, retain: bool = False) -> None:
        body = json.dumps(document, sort_keys=True, separators=(",", ":"))
        self.publish_raw(leaf, body.encode(), retain=retain)

    def publish_raw(self, leaf: str, payload: bytes, *, retain: bool = False) -> None:
        self._wait(self._send(leaf, payload, retain))

    def report(self, device: str, *fragments: dict[str, Any]) -> None:
        """Merge converter output into the device's cache and publish the whole state."""
        update: dict[str, Any] = {"linkquality": LINKQUALITY}
        for fragment in fragments:
            update = _deep_merge(update, fragment)
        with self._reporting:  # the network thread and motor timers both report
            if self._stopping:
                return
            merged = _deep_merge(self._cache[device], update)
            self._cache[device] = _cacheable(merged)
            body = json.dumps(merged, sort_keys=True, separators=(",", ":")).encode()
            sent = self._send(device, body, device in self.retained)
        self._wait(sent)

    def _send(self, leaf: str, payload: bytes, retain: bool) -> paho.MQTTMessageInfo:
        # QoS 1 from one client keeps its order at every subscriber.
        assert self._client is not None, "peer not started"
        return self._client.publish(self.topic(leaf), payload, qos=1, retain=retain)

    def _wait(self, sent: paho.MQTTMessageInfo) -> None:
        # Wait until the broker has it, so what a test does next comes after; except on
        # paho's network thread, which is the one that reads the broker's ack.
        if threading.current_thread() is not self._network_thread:
            sent.wait_for_publish(timeout=5)

    def state(self, device: str) -> dict[str, Any]:
        return copy.deepcopy(self._cache[device])

    # --- the physical world and Zigbee2MQTT's view of it -------------------------------------

    def set_bridge(self, online: bool) -> None:
        self.publish("bridge/state", {"state": "online" if online else "offline"}, retain=True)

    def restart(self, stale: dict[str, dict[str, Any]]) -> None:
        """Zigbee2MQTT dies (the broker sends its will: bridge offline) and starts again
        from its state.json, which it saves only every few minutes: `stale` is, per
        device, what that file held instead of the last state published. It says
        online, then publishes every cached state (`cache_state_send_on_startup`, on
        by default), live, not retained: history, though nothing on the wire says so."""
        self.set_bridge(False)
        for device, fragment in stale.items():
            self._cache[device] = _deep_merge(self._cache[device], fragment)
        self.set_bridge(True)
        for device in self.available:
            with self._reporting:
                body = json.dumps(self._cache[device], sort_keys=True, separators=(",", ":"))
                sent = self._send(device, body.encode(), device in self.retained)
            self._wait(sent)

    def set_available(self, device: str, online: bool) -> None:
        self.available[device] = online
        state = {"state": "online" if online else "offline"}
        self.publish(f"{device}/availability", state, retain=True)

    def open_door(self) -> None:
        self.report(SENSOR, self.fragments["contact_open"])

    def close_door(self) -> None:
        self.report(SENSOR, self.fragments["contact_closed"])

    # --- commands in ----------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 5) -> bool:
        """Wait until `predicate(received)` holds."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.received), timeout)

    def commands(self, device: str = LOCK, leaf: str = "set") -> list[Any]:
        with self._changed:
            return [r.body for r in self.received if r.device == device and r.leaf == leaf]

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        # A contract violation is recorded for the test to fail on, not raised here,
        # where it would only stop paho's network thread.
        try:
            self._handle(message)
        except Exception as exc:
            self.errors.append(f"{message.topic}: {exc!r}")

    def _handle(self, message: paho.MQTTMessage) -> None:
        device, leaf = message.topic[len(self.base) + 1 :].rsplit("/", 1)
        body = json.loads(message.payload)
        with self._changed:
            self.received.append(Received(device, leaf, body))
            self._changed.notify_all()
        if not self.available.get(device, False):
            return  # Zigbee2MQTT tries, the device never answers
        if leaf == "get":
            self._on_get(device, body)
        elif "state" in body:
            self._after_motor(lambda: self._move(device, body["state"]))
        elif "pin_code" in body:
            self._on_pin_code(device, body["pin_code"])
        elif "auto_relock_time" in body:
            self.report(device, {"auto_relock_time": body["auto_relock_time"]})

    def _after_motor(self, action: Callable[[], None]) -> None:
        timer = threading.Timer(self.motor_seconds, action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _move(self, device: str, command: str) -> None:
        mode = self.script.get((device, command), "normal")
        f = self.fragments
        if mode == "silent":
            return
        if mode == "jam" and device == ALARM_LOCK:
            self.report(device, f["alarm_deadbolt_jammed"])
        elif mode == "jam":
            self.report(device, f["lock_not_fully_locked"])
        elif command == "UNLOCK":
            self.report(device, f["operation_unlock_rf"])
            self.report(device, f["lock_unlocked"])
        else:
            self.report(device, f["operation_lock_rf"])
            self.report(device, f["lock_locked"])

    def _on_get(self, device: str, body: dict[str, Any]) -> None:
        if "state" in body:  # a read of lockState answers with fz.lock's fragment
            self.report(device, self.fragments[f"lock_{self._cache[device]['lock_state']}"])
        elif "pin_code" in body:  # getPinCode, answered by fz.lock_pin_code_response
            user = body["pin_code"]["user"]
            status = self._slots[device].get(user, "available")
            self.report(device, {"users": {str(user): {"status": status}}})

    def _on_pin_code(self, device: str, pin: dict[str, Any]) -> None:
        # What tz.pincode_lock checks before it sends setPinCode / clearPinCode.
        user = pin["user"]
        assert isinstance(user, int) and 0 <= user < PIN_CODE_COUNT, "user out of range"
        code = pin.get("pin_code")
        if code is None:
            event, status = "programming_pin_deleted_user3", "available"
        else:
            assert str(code).isdigit(), "pinCode must be a number"
            event = "programming_pin_added_user3"
            status = "enabled" if pin.get("user_enabled", True) else "disabled"
        self._slots[device][user] = status
        fragment = {**self.fragments[event], "action_user": user}
        self._after_motor(lambda: self.report(device, fragment))
