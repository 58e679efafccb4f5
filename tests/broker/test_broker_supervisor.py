"""A real Mosquitto under `Mosquitto`: authentication, the per-hub ACL, reloads, stopping.

Mosquitto 2.0 grants every SUBSCRIBE and filters each message at delivery against the
reader's ACL, and answers a forbidden PUBLISH with PUBACK "Not authorized". Absence is
shown with a sentinel published after the forbidden message (see conftest).
"""

from __future__ import annotations

import os
import signal
import socket
import stat
from pathlib import Path

import pytest

from doorstep.broker import BrokerError, Mosquitto, hash_password, new_password
from doorstep.protocol.topics import HUB_READS, HUB_WRITES, Topics
from polling import wait_until

ALL_LEAVES = HUB_READS + HUB_WRITES


def hub_ids(hub_passwords: dict[str, str]) -> tuple[Topics, Topics]:
    own, other = hub_passwords
    return Topics(own), Topics(other)


def test_hub_reads_its_own_read_leaves(service, hub_a, hub_passwords) -> None:
    own, _ = hub_ids(hub_passwords)
    for leaf in HUB_READS:
        assert hub_a.subscribe(own.leaf(leaf)) == ["Granted QoS 1"]

    for leaf in HUB_READS:
        assert service.publish(own.leaf(leaf), leaf.encode()) == "Success"

    received = [hub_a.next_message() for _ in HUB_READS]
    assert [(m.topic, m.payload) for m in received] == [
        (own.leaf(leaf), leaf.encode()) for leaf in HUB_READS
    ]


def test_hub_writes_its_own_write_leaves(service, hub_a, hub_passwords) -> None:
    own, _ = hub_ids(hub_passwords)
    service.subscribe("doorstep/hubs/#")

    for leaf in HUB_WRITES:
        assert hub_a.publish(own.leaf(leaf), leaf.encode()) == "Success"

    received = [service.next_message() for _ in HUB_WRITES]
    assert [m.topic for m in received] == [own.leaf(leaf) for leaf in HUB_WRITES]


@pytest.mark.parametrize("leaf", ALL_LEAVES)
def test_hub_cannot_read_another_hubs_topics(service, hub_a, hub_passwords, leaf) -> None:
    own, other = hub_ids(hub_passwords)
    hub_a.subscribe(other.leaf(leaf))
    hub_a.subscribe("doorstep/hubs/#")
    hub_a.subscribe(own.cmd)

    service.publish(other.leaf(leaf), b"not for hub A")
    service.publish(own.cmd, b"sentinel")

    assert hub_a.topics_before(own.cmd, b"sentinel") == []


@pytest.mark.parametrize("leaf", HUB_WRITES)
def test_hub_cannot_read_back_what_it_only_writes(service, hub_a, hub_passwords, leaf) -> None:
    own, _ = hub_ids(hub_passwords)
    hub_a.subscribe(own.leaf(leaf))
    hub_a.subscribe(own.cmd)

    service.publish(own.leaf(leaf), b"hub A may not read this")
    service.publish(own.cmd, b"sentinel")

    assert hub_a.topics_before(own.cmd, b"sentinel") == []


@pytest.mark.parametrize("leaf", ALL_LEAVES)
def test_hub_cannot_write_another_hubs_topics(service, hub_a, hub_passwords, leaf) -> None:
    own, other = hub_ids(hub_passwords)
    service.subscribe("doorstep/hubs/#")

    assert hub_a.publish(other.leaf(leaf), b"forged") == "Not authorized"
    hub_a.publish(own.events, b"sentinel")

    assert service.topics_before(own.events, b"sentinel") == []


@pytest.mark.parametrize("leaf", HUB_READS)
def test_hub_cannot_write_its_own_read_leaves(service, hub_a, hub_passwords, leaf) -> None:
    own, _ = hub_ids(hub_passwords)
    service.subscribe("doorstep/hubs/#")

    assert hub_a.publish(own.leaf(leaf), b"self-issued") == "Not authorized"
    hub_a.publish(own.events, b"sentinel")

    assert service.topics_before(own.events, b"sentinel") == []


def test_hub_cannot_write_outside_the_doorstep_tree(service, hub_a, hub_passwords) -> None:
    own, _ = hub_ids(hub_passwords)
    service.subscribe("#")

    assert hub_a.publish("zigbee2mqtt/front-door/set", b"UNLOCK") == "Not authorized"
    hub_a.publish(own.events, b"sentinel")

    assert service.topics_before(own.events, b"sentinel") == []


def test_anonymous_clients_are_refused(connack) -> None:
    assert connack(None, None) == "Not authorized"


def test_wrong_password_and_unknown_user_are_refused(broker, connack, hub_passwords) -> None:
    own, _ = hub_passwords
    assert connack(own, "wrong") == "Not authorized"
    assert connack(broker.service_user, "wrong") == "Not authorized"
    assert connack("hub-00000000", hub_passwords[own]) == "Not authorized"


def test_update_hubs_admits_a_new_hub(broker, connack, hub_hashes) -> None:
    password = new_password()
    assert connack("hub-0000cafe", password) == "Not authorized"

    broker.update_hubs({**hub_hashes, "hub-0000cafe": hash_password(password)})

    # update_hubs returns once the broker has begun its reload, so no retry is needed.
    assert connack("hub-0000cafe", password) == "Success"


def test_update_hubs_reads_the_hubs_in_its_turn(broker, connack, hub_hashes) -> None:
    """Two enrollments at once: each reads the hub list only once the reload before it
    is done, so the list written last is the newer one, never a list read before it."""
    password = new_password()
    read_in_turn: list[bool] = []

    def hubs() -> dict[str, str]:
        read_in_turn.append(broker._reload_lock.locked())
        return {**hub_hashes, "hub-0000f00d": hash_password(password)}

    broker.update_hubs(hubs)

    assert read_in_turn == [True]
    assert connack("hub-0000f00d", password) == "Success"


def test_update_hubs_locks_a_removed_hub_out(broker, hub_a, connack, hub_passwords, hub_hashes):
    own, other = hub_passwords

    broker.update_hubs({other: hub_hashes[other]})

    assert connack(own, hub_passwords[own]) == "Not authorized"
    assert connack(other, hub_passwords[other]) == "Success"
    # Mosquitto 2.0 also re-checks open connections on reload and drops the removed hub's.
    assert hub_a.next_event()[0] == "disconnect"


def test_a_hub_cannot_take_over_another_hubs_client_id(connect, service, hub_passwords) -> None:
    own, other = hub_ids(hub_passwords)
    hub_a = connect(own.hub_id, hub_passwords[own.hub_id], own.hub_id)  # as hubs connect
    hub_a.subscribe(own.cmd)
    # Hub B presents hub A's client id; the broker uses B's user name instead, so hub A's
    # session is untouched (without that, A would be pushed off and its will published).
    connect(other.hub_id, hub_passwords[other.hub_id], own.hub_id)
    assert service.publish(own.cmd, b"for A only") == "Success"
    assert hub_a.next_message().payload == b"for A only"
    assert hub_a.events.empty(), hub_a.events.get()


def test_update_hubs_keeps_the_service_connected(broker, service, hub_passwords) -> None:
    own, _ = hub_ids(hub_passwords)
    service.subscribe(own.events)

    broker.update_hubs({})

    assert service.publish(own.events, b"still here") == "Success"
    assert service.next_message().payload == b"still here"


def test_update_hubs_needs_a_running_broker(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="not running"):
        Mosquitto(tmp_path).update_hubs({})


def test_update_hubs_rejects_a_crafted_hub_id_and_keeps_the_files(broker, hub_hashes) -> None:
    acl_before = (broker.directory / "acl").read_text()

    with pytest.raises(ValueError, match="hub id"):
        broker.update_hubs({"hub-aaa\ntopic readwrite #": hash_password("x")})

    assert (broker.directory / "acl").read_text() == acl_before


def test_stop_ends_the_process_and_is_idempotent(broker) -> None:
    pid = broker.pid
    assert pid is not None and broker.running

    broker.stop()
    broker.stop()

    assert not broker.running
    assert broker.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_retained_messages_survive_a_restart_in_the_data_dir(
    broker, connect, hub_passwords, hub_hashes
) -> None:
    own, _ = hub_ids(hub_passwords)
    service = connect(broker.service_user, broker.service_password)
    service.publish(own.desired, b'{"version": 7}', retain=True)
    service.close()

    broker.stop()
    assert (broker.data_dir / "mosquitto.db").is_file()
    broker.start(hub_hashes)

    hub = connect(own.hub_id, hub_passwords[own.hub_id])
    hub.subscribe(own.desired)
    message = hub.next_message()
    assert (message.payload, message.retain) == (b'{"version": 7}', True)


def test_files_are_private_to_the_owner(broker) -> None:
    for name in ("mosquitto.conf", "passwords", "acl", "mosquitto.log"):
        mode = stat.S_IMODE((broker.directory / name).stat().st_mode)
        assert mode == 0o600, name
    assert stat.S_IMODE(broker.directory.stat().st_mode) == 0o700


def test_password_file_holds_only_hashes(broker, hub_passwords) -> None:
    passwords = (broker.directory / "passwords").read_text()

    assert broker.service_password not in passwords
    assert not any(password in passwords for password in hub_passwords.values())
    assert passwords.startswith(f"{broker.service_user}:$7$101$")


def test_context_manager_starts_and_stops(tmp_path: Path) -> None:
    with Mosquitto(tmp_path, service_user="svc", service_password="s3cret") as broker:
        assert broker.running
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        assert (broker.host, broker.service_user, broker.service_password) == (
            "127.0.0.1",
            "svc",
            "s3cret",
        )
    assert not broker.running


def test_start_twice_is_an_error(broker, hub_hashes) -> None:
    with pytest.raises(BrokerError, match="already running"):
        broker.start(hub_hashes)


def test_a_port_taken_by_someone_else_fails_with_the_log(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        broker = Mosquitto(tmp_path, port=squatter.getsockname()[1])

        with pytest.raises(BrokerError, match="Address already in use"):
            broker.start()

    assert not broker.running


def test_missing_executable_says_how_to_install_it(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, executable="no-such-mosquitto")

    with pytest.raises(BrokerError, match="no-such-mosquitto not found; run scripts/setup"):
        broker.start()


def test_bad_service_user_name_is_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Mosquitto(tmp_path, service_user="svc\ntopic readwrite #")


def test_start_ends_a_broker_left_running_on_the_same_directory(tmp_path: Path) -> None:
    # As if `serve` had been killed: the first supervisor never calls stop().
    abandoned = Mosquitto(tmp_path)
    abandoned.start()
    stale_pid = abandoned.pid

    with Mosquitto(tmp_path) as successor:
        assert not abandoned.running
        assert successor.pid != stale_pid
        assert (tmp_path / "mosquitto.pid").read_text() == f"{successor.pid}\n"
    assert not (tmp_path / "mosquitto.pid").exists()


def test_start_leaves_an_unrelated_process_named_in_the_pid_file_alone(tmp_path: Path) -> None:
    (tmp_path / "mosquitto.pid").write_text(f"{os.getpid()}\n")

    with Mosquitto(tmp_path) as broker:
        assert broker.running


def test_revive_starts_a_dead_broker_again_and_leaves_others_alone(
    broker, hub_hashes, hub_passwords, connack
) -> None:
    assert broker.revive(lambda: hub_hashes) is None  # running: nothing to do
    killed = broker.pid
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: not broker.running, 5, "the broker to die")
    assert broker.revive(lambda: hub_hashes) == -signal.SIGKILL
    assert broker.running and broker.pid != killed
    hub = next(iter(hub_passwords))
    assert connack(hub, hub_passwords[hub]) == "Success"  # same port, same hubs
    broker.stop()
    assert broker.revive(lambda: hub_hashes) is None  # stopped on purpose: stays stopped
    assert not broker.running
