"""The demo, as a library: start a service and simulated homes as real processes on
loopback, and play carrier, resident and courier through the public HTTP API.

`doorstep demo` prints each step; the end-to-end tests use the same pieces and assert.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from doorstep.broker.supervisor import free_port
from doorstep.hub import simcontrol
from doorstep.protocol import pop
from doorstep.protocol.messages import b64decode, b64encode

Say = Callable[[str], None]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def spawn(name: str, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handle = log_path.open("ab")
    popen = subprocess.Popen(
        [sys.executable, "-m", "doorstep", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    handle.close()
    return Process(name, popen, log_path)


@dataclass
class Service:
    url: str
    data_dir: Path
    process: Process | None
    env: dict[str, str]

    @property
    def database(self) -> Path:
        return self.data_dir / "doorstep.db"


def start_service(
    data_dir: Path, *, env: dict[str, str] | None = None, timeout: float = 30
) -> Service:
    port = free_port()
    env = {"DOORSTEP_DATA_DIR": str(data_dir), "DOORSTEP_HTTP_PORT": str(port), **(env or {})}
    process = spawn("serve", ["serve"], data_dir / "logs" / "serve.log", env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Service(url, data_dir, process, env)
        except httpx.TransportError:
            pass  # not listening yet
        try:
            # Waiting on the child paces the loop and notices at once if it exits.
            process.popen.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"serve exited; see {process.log_path}")
    process.stop()
    raise RuntimeError(f"serve did not answer within {timeout}s; see {process.log_path}")


def create_operator(service: Service, email: str, password: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "doorstep",
            "users",
            "create-operator",
            "--email",
            email,
            "--password",
            password,
        ],
        check=True,
        capture_output=True,
        env={**os.environ, **service.env},
    )


class Phone:
    """A courier's phone key, as the courier app keeps it in WebCrypto (here in memory)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.key_id: str | None = None

    def register(self, api: Api) -> None:
        registered = api.call(
            "POST", "/v1/courier/device-keys", 201,
            json={"jwk": pop.jwk(self.key.public_key()), "label": "demo phone"},
        )  # fmt: skip
        self.key_id = registered["id"]

    def prove(self, to_sign: str) -> str:
        """Sign the door's challenge message (base64url in, base64url r||s out)."""
        return b64encode(pop.sign(self.key, b64decode(to_sign)))


class Api:
    """A thin client for one principal (a courier's also holds its phone key)."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=30)
        self.phone: Phone | None = None

    def call(
        self, method: str, path: str, expect: int | tuple[int, ...] = 200, **kwargs: Any
    ) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code not in (expect if isinstance(expect, tuple) else (expect,)):
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @classmethod
    def login(cls, base_url: str, **form: str) -> Api:
        with cls(base_url) as anonymous:
            token = anonymous.call("POST", "/v1/auth/token", data=form)["access_token"]
        return cls(base_url, token)


@dataclass
class Home:
    id: str
    hub_id: str
    latitude: float
    longitude: float
    hub_dir: Path
    resident: Api
    hub_process: Process | None = None

    def door(self, op: str) -> dict[str, Any]:
        """Play a hand at the simulated door (`hub.simcontrol.OPS`); an unknown op raises."""
        answer = simcontrol.send(self.hub_dir / "sim.sock", op)
        if "error" in answer:
            raise RuntimeError(f"door {op!r}: {answer['error']}")
        return answer

    def type_code(self, pin: str, access_point: str = "front") -> dict[str, Any]:
        """Type a code at the simulated lock's keypad; the lock's verdict (`granted`,
        `error`)."""
        answer = simcontrol.send(self.hub_dir / "sim.sock", "keypad", access_point, pin=pin)
        if not answer.get("ok"):
            raise RuntimeError(f"keypad: {answer.get('error')}")
        verdict: dict[str, Any] = answer["verdict"]
        return verdict


@dataclass
class World:
    service: Service
    operator: Api
    carrier: Api
    carrier_id: str
    couriers: list[tuple[str, Api]] = field(default_factory=list)
    homes: list[Home] = field(default_factory=list)

    def close(self) -> None:
        """Stop the hubs this world started and close every client."""
        for home in self.homes:
            if home.hub_process is not None:
                home.hub_process.stop()
            home.resident.close()
        for api in (self.operator, self.carrier, *(api for _id, api in self.couriers)):
            api.close()


PASSWORD = "correct horse battery"  # noqa: S105 - the demo accounts' password


HubLauncher = Callable[[Service, Path, str], "Process | None"]


def build_world(
    service: Service,
    *,
    homes: int,
    say: Say,
    make_operator: Callable[[Service, str, str], None] | None = None,
    launch_hub: HubLauncher | None = None,
) -> World:
    (make_operator or create_operator)(service, "operator@doorstep.test", PASSWORD)
    operator = Api.login(
        service.url, grant_type="password", username="operator@doorstep.test", password=PASSWORD
    )
    carrier_info = operator.call("POST", "/v1/carriers", 201, json={"name": "Parcelly"})
    say(f"operator registered carrier {carrier_info['name']} ({carrier_info['id']})")
    carrier = Api.login(
        service.url,
        grant_type="client_credentials",
        client_id=carrier_info["client_id"],
        client_secret=carrier_info["client_secret"],
    )
    world = World(service, operator, carrier, carrier_info["id"])
    courier = carrier.call(
        "POST",
        "/v1/couriers",
        201,
        json={"email": "casey@parcelly.test", "name": "Casey Courier", "password": PASSWORD},
    )
    courier_api = Api.login(
        service.url, grant_type="password", username="casey@parcelly.test", password=PASSWORD
    )
    courier_api.phone = Phone()
    courier_api.phone.register(courier_api)  # what the courier app does at sign-in
    world.couriers.append((courier["id"], courier_api))
    say(f"carrier added courier {courier['name']} ({courier['id']})")
    for number in range(1, homes + 1):
        world.homes.append(add_home(service, world, number, say, launch_hub or start_hub))
    return world


def add_home(
    service: Service, world: World, number: int, say: Say, launch_hub: HubLauncher
) -> Home:
    email = f"resident{number}@doorstep.test"
    with Api(service.url) as anonymous:
        anonymous.call(
            "POST",
            "/v1/residents",
            201,
            json={"email": email, "name": f"Resident {number}", "password": PASSWORD},
        )
    resident = Api.login(service.url, grant_type="password", username=email, password=PASSWORD)
    lat, lon = 51.5007 + number * 0.01, -0.1246
    home = resident.call(
        "POST",
        "/v1/homes",
        201,
        json={
            "name": f"Home {number}",
            "address": f"{number} Demo Street",
            "latitude": lat,
            "longitude": lon,
            "timezone": "Europe/London",
        },
    )
    resident.call(
        "POST",
        f"/v1/homes/{home['id']}/access-points",
        201,
        json={"slug": "front", "name": "Front door"},
    )
    hub = resident.call("POST", f"/v1/homes/{home['id']}/hubs", 201)
    resident.call(
        "POST", f"/v1/homes/{home['id']}/carriers", 201, json={"carrier_id": world.carrier_id}
    )
    say(
        f"resident {number} set up {home['name']} with hub {hub['hub_id']} "
        f"(claim code {hub['claim_code'][:4]}-****) and allowed Parcelly in"
    )
    hub_dir = service.data_dir / "hubs" / hub["hub_id"]
    result = Home(home["id"], hub["hub_id"], lat, lon, hub_dir, resident)
    result.hub_process = launch_hub(service, hub_dir, hub["claim_code"])
    wait_hub_online(result, online=True)
    say(f"hub {hub['hub_id']} claimed its code, connected to the broker and is online")
    return result


def start_hub(
    service: Service, hub_dir: Path, claim_code: str | None = None, motor_seconds: float = 0.0
) -> Process | None:
    args = ["hub", "--data-dir", str(hub_dir), "--motor-seconds", str(motor_seconds)]
    if claim_code:
        args += ["--service", service.url, "--claim-code", claim_code]
    return spawn(f"hub {hub_dir.name}", args, service.data_dir / "logs" / f"{hub_dir.name}.log")


def wait_hub_online(
    home: Home, *, online: bool, epoch: int | None = None, timeout: float = 20
) -> None:
    """Until the service sees the hub online (in boot `epoch`, if given) or offline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = home.resident.call("GET", f"/v1/homes/{home.id}")
        hub = state["hubs"][0] if state["hubs"] else {}
        if hub.get("online") is online and epoch in (None, hub.get("epoch")):
            return
        popen = getattr(home.hub_process, "popen", None)
        if popen is not None and popen.poll() is not None and online:
            raise RuntimeError(f"hub exited; see {getattr(home.hub_process, 'log_path', '')}")
        home.resident.call("GET", "/v1/homes")  # a round trip, not a sleep
    raise RuntimeError(f"hub of {home.id} did not become {'online' if online else 'offline'}")


def book(
    world: World,
    home: Home,
    barcodes: list[str],
    *,
    courier: int = 0,
    window: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    start, end = window or (now - timedelta(minutes=10), now + timedelta(hours=2))
    delivery: dict[str, Any] = world.carrier.call(
        "POST",
        "/v1/deliveries",
        201,
        json={
            "home_id": home.id,
            "courier_id": world.couriers[courier][0],
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "packages": [{"barcode": code} for code in barcodes],
            "reference": "demo",
        },
    )
    return delivery


def request_entry(
    courier: Api,
    delivery_id: str,
    barcode: str,
    lat: float,
    lon: float,
    accuracy: float = 8.0,
    **fields: Any,
) -> dict[str, Any]:
    """Ask to enter as the courier app does: with the phone's key named, and, when the
    door answers with a challenge, the phone's signature of it. Returns the entry once
    the hub has unlocked or refused (or the service stopped waiting)."""
    body = {
        "delivery_id": delivery_id,
        "barcode": barcode,
        "latitude": lat,
        "longitude": lon,
        "accuracy_m": accuracy,
        "nobody_answered": True,
        **({"device_key_id": courier.phone.key_id} if courier.phone else {}),
        **fields,
    }
    return prove_and_unlock(courier, ask_to_enter(courier, body))


def ask_to_enter(courier: Api, body: dict[str, Any]) -> dict[str, Any]:
    """The courier's entry request, with the door's challenge once the hub sent it (a
    202 means the hub did not answer within the service's wait: the entry is followed)."""
    entry: dict[str, Any] = courier.call(
        "POST", "/v1/courier/entries?wait=challenge", (201, 202), json=body
    )
    if entry["state"] == "authorized" and not entry.get("to_sign") and courier.phone:
        return wait_challenge(courier, entry["id"])
    return entry


def wait_challenge(courier: Api, entry_id: str, timeout: float = 15) -> dict[str, Any]:
    """Poll the entry (bounded) until the door's challenge is there, e.g. after the
    resident approved an entry that was waiting; returns the entry as last seen."""
    deadline = time.monotonic() + timeout
    while True:
        entry: dict[str, Any] = courier.call("GET", f"/v1/entries/{entry_id}")
        if entry.get("to_sign") or entry["state"] != "authorized" or time.monotonic() > deadline:
            return entry
        time.sleep(0.05)


def prove_and_unlock(courier: Api, entry: dict[str, Any]) -> dict[str, Any]:
    """If the door sent a challenge, sign it with the phone and send the proof."""
    if entry["state"] != "authorized" or not entry.get("to_sign") or courier.phone is None:
        return entry
    proof = courier.phone.prove(entry["to_sign"])
    unlocked: dict[str, Any] = courier.call(
        "POST",
        f"/v1/courier/entries/{entry['id']}/unlock?wait=unlocked",
        (200, 202),  # 202: the hub did not answer within the wait; follow the entry
        json={"proof": proof},
    )
    if unlocked["state"] == "authorized":
        return wait_entry(courier, entry["id"], "unlocked")
    return unlocked


def wait_entry(api: Api, entry_id: str, state: str, timeout: float = 15) -> dict[str, Any]:
    """The entry once it reaches `state` or has ended another way (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        entry: dict[str, Any] = api.call(
            "GET",
            f"/v1/entries/{entry_id}",
            params={"wait_for": state, "timeout": min(remaining, 10)},
        )
        if entry["state"] == state or remaining <= 0 or entry["state"] in _ENDED:
            return entry


_ENDED = {"done", "denied", "refused", "expired", "aborted", "declined"}


@contextmanager
def running(data_dir: Path, *, homes: int, say: Say) -> Iterator[World]:
    service = start_service(data_dir)
    world: World | None = None
    try:
        pid = service.process.popen.pid if service.process else "-"
        say(f"service up at {service.url} (pid {pid}); it started and supervises its own Mosquitto")
        world = build_world(service, homes=homes, say=say)
        yield world
    finally:
        if world is not None:
            world.close()
        if service.process is not None:
            service.process.stop()
