"""`doorstep broker files` on a real Mosquitto that `serve` does not run (DOORSTEP_BROKER_URL).

The "external" broker is configured exactly as `serve` configures its own (the same
renderers), with `serve-a` as the user of the one `serve` process; the command then owns
its password file and ACL. A hub enrolled through that `serve` is refused by the broker
until the command has written its hash and the broker has reloaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from doorstep import demo
from doorstep.broker import Mosquitto, hash_password, new_password
from doorstep.hub import config as hub_config
from doorstep.protocol.topics import ROOT, Topics
from polling import wait_until

SERVICE_USERS = ("serve-a", "serve-b")


@dataclass
class External:
    broker: Mosquitto
    service: demo.Service
    passwords: dict[str, str]  # service user -> plaintext
    service_password_file: Path

    def files_args(self, *extra: str) -> list[str]:
        args = [
            *("broker", "files"),
            *("--password-file", str(self.broker.directory / "passwords")),
            *("--acl-file", str(self.broker.directory / "acl")),
            *("--service-password-file", str(self.service_password_file)),
        ]
        for user in SERVICE_USERS:
            args += ["--service-user", user]
        return [*args, *extra]

    def files(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "doorstep", *self.files_args(*extra)],
            capture_output=True,
            text=True,
            env={**os.environ, **self.service.env},
            timeout=60,
        )

    def broker_log(self) -> str:
        return self.broker.log_file.read_text()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """The external broker, with only `serve-a` until `doorstep broker files` runs.
    (Overrides conftest's `broker`, so that `connect` opens sessions on this one.)"""
    mosquitto = Mosquitto(
        tmp_path / "broker", service_user="serve-a", service_password=new_password()
    )
    mosquitto.start({})
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def external(tmp_path: Path, broker: Mosquitto) -> Iterator[External]:
    passwords = {"serve-a": broker.service_password, "serve-b": new_password()}
    service_password_file = tmp_path / "service-passwords"
    service_password_file.write_text(
        "".join(f"{user}:{hash_password(password)}\n" for user, password in passwords.items())
    )
    url = f"mqtt://serve-a:{passwords['serve-a']}@{broker.host}:{broker.port}"
    service = demo.start_service(tmp_path / "service", env={"DOORSTEP_BROKER_URL": url})
    try:
        yield External(broker, service, passwords, service_password_file)
    finally:
        assert service.process is not None
        service.process.stop()


def _refused(hub: demo.Process) -> Callable[[], bool]:
    return lambda: "failed: Not authorized" in hub.log_path.read_text()


def test_a_hub_enrolled_through_serve_connects_once_the_files_are_written(
    external: External, connect: Callable[..., Any]
) -> None:
    runs: list[subprocess.CompletedProcess[str]] = []

    def enroll_then_write_files(
        service: demo.Service, hub_dir: Path, claim_code: str
    ) -> demo.Process | None:
        hub = demo.start_hub(service, hub_dir, claim_code)
        try:
            wait_until(_refused(hub), 20, "the broker refusing the enrolled hub")
            runs.append(external.files("--reload-pid", str(external.broker.pid)))
            assert runs[-1].returncode == 0, runs[-1].stderr
        except BaseException:
            hub.stop()
            raise
        return hub

    world = demo.build_world(
        external.service, homes=1, say=lambda _m: None, launch_hub=enroll_then_write_files
    )  # returns once the service sees the hub online
    try:
        [home] = world.homes
        [run] = runs
        assert f"sent SIGHUP to mosquitto (pid {external.broker.pid})" in run.stdout
        for secret in external.passwords.values():
            assert secret not in run.stdout + run.stderr
        for written in ("passwords", "acl"):
            assert (external.broker.directory / written).stat().st_mode & 0o777 == 0o600

        # A second service user, as a second `serve` would use, reaches every hub's topics
        # beside the running serve, and neither pushes the other off the broker.
        peer = connect("serve-b", external.passwords["serve-b"])
        assert peer.subscribe(f"{ROOT}/+/status") == ["Granted QoS 1"]
        assert peer.next_message().topic == Topics(home.hub_id).status
        assert "already connected" not in external.broker_log()
        assert external.broker_log().count(" as serve-a ") == 1

        # The hub's own credentials still reach only its own topics.
        assert home.hub_process is not None
        home.hub_process.stop()
        hub_password = _hub_password(home.hub_dir)
        as_hub = connect(home.hub_id, hub_password)
        own, other = Topics(home.hub_id), Topics("hub-0000aaaa")
        as_hub.subscribe(f"{ROOT}/#")
        peer.publish(other.cmd, b"another hub's command")
        peer.publish(own.cmd, b"sentinel")
        received = as_hub.topics_before(own.cmd, b"sentinel")  # its own retained ones
        assert [topic for topic in received if not topic.startswith(f"{ROOT}/{own.hub_id}/")] == []
        assert as_hub.publish(other.events, b"{}") == "Not authorized"
    finally:
        world.close()


def test_watch_takes_up_a_hub_enrolled_later_and_reloads_the_broker(
    external: External, tmp_path: Path
) -> None:
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(f"{external.broker.pid}\n")
    watcher = demo.spawn(
        "broker files",
        external.files_args("--watch", "0.1", "--reload-pid", str(pid_file)),
        tmp_path / "watch.log",
        external.service.env,
    )
    hubs: list[demo.Process] = []

    def start_hub(service: demo.Service, hub_dir: Path, claim_code: str) -> demo.Process:
        hubs.append(demo.start_hub(service, hub_dir, claim_code))
        return hubs[-1]

    try:
        # build_world returns once the service sees the hub online: nothing but the
        # watcher gave the broker its hash.
        world = demo.build_world(
            external.service, homes=1, say=lambda _m: None, launch_hub=start_hub
        )
        world.close()
        written = (tmp_path / "watch.log").read_text().split("hubs: 1, service users: 2")
        assert f"sent SIGHUP to mosquitto (pid {external.broker.pid})" in written[1]
    finally:
        for process in (*hubs, watcher):
            process.stop()


def test_a_service_user_without_a_hash_is_refused_and_nothing_is_written(
    broker: Mosquitto, tmp_path: Path
) -> None:
    service_password_file = tmp_path / "service-passwords"
    service_password_file.write_text(f"serve-a:{hash_password(broker.service_password)}\n")
    external = External(broker, demo.Service("", tmp_path, None, {}), {}, service_password_file)
    before = (broker.directory / "passwords").read_text()

    run = external.files()

    assert run.returncode == 1
    assert run.stderr.strip() == (
        f"Error: no hash for service user 'serve-b' in {service_password_file}"
    )
    assert (broker.directory / "passwords").read_text() == before


def _hub_password(hub_dir: Path) -> str:
    config = hub_config.load(hub_dir)
    assert config is not None
    return config.broker.password
