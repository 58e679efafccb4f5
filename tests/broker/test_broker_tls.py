"""MQTT over TLS against a real Mosquitto TLS listener (attacks-and-faults row 11): hubs
(paho's own loop) and the service (`LoopDriver`) connect and exchange messages over it;
a certificate that is self-signed, for another host, expired or from another CA is
refused before anything is sent (no CONNECT, so no CONNACK and no message), with a log
line that says why, and the service keeps trying; the ACL holds on the TLS listener."""

from __future__ import annotations

import asyncio
import logging
import queue
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from certificates import Authority, authority, server_cert

from doorstep.broker import Mosquitto, TlsListener, new_password
from doorstep.broker.supervisor import free_port
from doorstep.protocol import mqtt, mqtt_asyncio, topics
from doorstep.protocol.mqtt_asyncio import LoopDriver
from polling import wait_until

HUB_A = "hub-3f9a1c2b"  # conftest's two hubs
HUB_B = "hub-77aa0e19"
TIMEOUT = 10.0
REFUSED = "TLS handshake failed"


@pytest.fixture
def ca() -> Authority:
    return authority()


@pytest.fixture
def tls_port() -> int:
    return free_port()


@pytest.fixture
def start_broker(
    tmp_path: Path, hub_hashes: dict[str, str], tls_port: int
) -> Iterator[Callable[[tuple[Path, Path]], Mosquitto]]:
    """Start (or restart, same ports and data) the broker with a TLS listener showing
    this certificate and key."""
    port, service_password = free_port(), new_password()
    brokers: list[Mosquitto] = []

    def start(cert_and_key: tuple[Path, Path]) -> Mosquitto:
        for running in brokers:
            running.stop()
        listener = TlsListener("127.0.0.1", tls_port, *cert_and_key)
        broker = Mosquitto(
            tmp_path / "broker", port=port, service_password=service_password, tls=listener
        )
        broker.start(hub_hashes)
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture
def broker(
    start_broker: Callable[[tuple[Path, Path]], Mosquitto], tmp_path: Path, ca: Authority
) -> Mosquitto:
    """Replaces conftest's: a broker whose TLS listener has a certificate `ca` signed."""
    return start_broker(server_cert(tmp_path / "good", by=ca))


def _tls(broker: Mosquitto, username: str, password: str, ca_pem: str) -> mqtt.BrokerAddress:
    assert broker.tls is not None
    return mqtt.BrokerAddress(
        "127.0.0.1", broker.tls.port, username, password, tls=True, ca_pem=ca_pem
    )


def _hub(
    address: mqtt.BrokerAddress, timeout: float = TIMEOUT
) -> tuple[paho.Client, queue.Queue[Any]]:
    client = mqtt.make_client(address.username, address)
    received: queue.Queue[paho.MQTTMessage] = queue.Queue()
    client.on_message = lambda _c, _u, message: received.put(message)
    mqtt.connect(client, address, timeout=timeout)
    return client, received


def test_a_hub_and_the_service_exchange_messages_over_tls(
    broker: Mosquitto, ca: Authority, hub_passwords: dict[str, str], service: Any
) -> None:
    own = topics.Topics(HUB_A)
    service.subscribe(own.events)
    client, received = _hub(_tls(broker, HUB_A, hub_passwords[HUB_A], ca.pem))
    try:
        assert client.socket().version() in ("TLSv1.2", "TLSv1.3")
        client.subscribe(own.cmd, qos=1)
        client.publish(own.events, b"an event", qos=1).wait_for_publish(TIMEOUT)
        assert service.next_message().payload == b"an event"
        wait_until(lambda: service.publish(own.cmd, b"a command") == "Success", TIMEOUT, "puback")
        assert received.get(timeout=TIMEOUT).payload == b"a command"
    finally:
        mqtt.close(client)


def test_the_acl_holds_on_the_tls_listener(
    broker: Mosquitto, ca: Authority, hub_passwords: dict[str, str], service: Any
) -> None:
    own, other = topics.Topics(HUB_A), topics.Topics(HUB_B)
    service.subscribe(other.events)
    client, received = _hub(_tls(broker, HUB_A, hub_passwords[HUB_A], ca.pem))
    acks: dict[int, str] = {}
    client.on_publish = lambda _c, _u, mid, code, _p: acks.setdefault(mid, str(code))
    try:
        client.subscribe(other.cmd, qos=1)
        client.subscribe(own.cmd, qos=1)
        forged = client.publish(other.events, b"forged", qos=1)
        forged.wait_for_publish(TIMEOUT)
        assert acks[forged.mid] == "Not authorized"
        wait_until(lambda: service.publish(other.cmd, b"not yours") == "Success", TIMEOUT, "ack")
        service.publish(own.cmd, b"sentinel")
        assert received.get(timeout=TIMEOUT).payload == b"sentinel"  # nothing before it
    finally:
        mqtt.close(client)
    with pytest.raises(ConnectionError, match=r"Not authorized|Bad user name or password"):
        _hub(_tls(broker, HUB_A, "wrong", ca.pem))


def test_the_service_on_the_event_loop_exchanges_messages_over_tls(
    broker: Mosquitto, ca: Authority, hub_passwords: dict[str, str], connect: Any
) -> None:
    own = topics.Topics(HUB_A)
    hub = connect(HUB_A, hub_passwords[HUB_A], HUB_A)  # the hub on the plain listener
    hub.subscribe(own.cmd)
    address = _tls(broker, broker.service_user, broker.service_password, ca.pem)
    big = bytes(range(256)) * 400  # several TLS records

    async def main() -> list[bytes]:
        received: asyncio.Queue[bytes] = asyncio.Queue()
        subscribed = asyncio.get_running_loop().create_future()
        client = mqtt.make_client("doorstep-service", address)
        client.on_connect = lambda c, *_: c.subscribe(own.events, qos=1)
        client.on_subscribe = lambda *_: subscribed.set_result(True)
        client.on_message = lambda _c, _u, message: received.put_nowait(message.payload)
        driver = LoopDriver(client, address)
        await driver.start()
        try:
            assert client.socket().version() in ("TLSv1.2", "TLSv1.3")
            await asyncio.wait_for(subscribed, TIMEOUT)
            driver.publish(own.cmd, b"a command", qos=1)
            command = await asyncio.to_thread(hub.next_message)
            await asyncio.to_thread(hub.publish, own.events, big)
            return [command.payload, await asyncio.wait_for(received.get(), TIMEOUT)]
        finally:
            driver.stop()

    assert asyncio.run(main()) == [b"a command", big]


def test_the_service_reads_what_tls_holds_decrypted(
    tmp_path: Path, ca: Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A broker that sends its CONNACK and a PUBLISH in one TLS record; the driver reads
    # ahead just the CONNACK. The PUBLISH is then decrypted in the TLS layer, and the
    # socket does not turn readable for it: the driver must read on all the same.
    connack = bytes([0x20, 3, 0, 0, 0])
    topic = b"doorstep/v1/hubs/hub-3f9a1c2b/events"
    publish = bytes([0x30, 2 + len(topic) + 1 + 5]) + len(topic).to_bytes(2) + topic
    publish += b"\x00" + b"hello"
    monkeypatch.setattr(mqtt_asyncio, "READ_AHEAD_BYTES", len(connack))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*server_cert(tmp_path / "cert", by=ca))
    listener = socket.create_server(("127.0.0.1", 0))
    finished = threading.Event()

    def broker() -> None:
        conn, _peer = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(4096)  # the CONNECT
            tls.sendall(connack + publish)
            finished.wait(TIMEOUT)

    address = mqtt.BrokerAddress(
        "127.0.0.1", listener.getsockname()[1], "doorstep", "x", tls=True, ca_pem=ca.pem
    )

    async def main() -> bytes:
        received: asyncio.Queue[bytes] = asyncio.Queue()
        client = mqtt.make_client("doorstep-service", address)
        client.on_message = lambda _c, _u, message: received.put_nowait(message.payload)
        driver = LoopDriver(client, address)
        await driver.start()
        try:
            return await asyncio.wait_for(received.get(), 5)
        finally:
            driver.stop()

    thread = threading.Thread(target=broker)
    thread.start()
    try:
        assert asyncio.run(main()) == b"hello"
    finally:
        finished.set()
        thread.join()
        listener.close()


def _bad_certificates(directory: Path, ca: Authority) -> dict[str, tuple[Path, Path]]:
    return {
        "self-signed": server_cert(directory / "self", by=None),
        "another host": server_cert(directory / "host", by=ca, hosts=("broker.example",)),
        "expired": server_cert(directory / "expired", by=ca, expired=True),
        "another CA": server_cert(directory / "other", by=authority("Another CA")),
    }


@pytest.mark.parametrize("case", ["self-signed", "another host", "expired", "another CA"])
def test_a_hub_refuses_a_bad_certificate(
    case: str,
    start_broker: Callable[[tuple[Path, Path]], Mosquitto],
    tmp_path: Path,
    ca: Authority,
    hub_passwords: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = start_broker(_bad_certificates(tmp_path / "certs", ca)[case])
    caplog.set_level(logging.ERROR, logger=mqtt.__name__)
    with pytest.raises(ConnectionError):
        _hub(_tls(broker, HUB_A, hub_passwords[HUB_A], ca.pem), timeout=1.5)
    assert REFUSED in caplog.text and "certificate verify failed" in caplog.text
    assert f"as {HUB_A}" not in broker.log_tail(200)  # no CONNECT ever reached it


@pytest.mark.parametrize("case", ["self-signed", "another host", "expired", "another CA"])
def test_the_service_refuses_a_bad_certificate(
    case: str,
    start_broker: Callable[[tuple[Path, Path]], Mosquitto],
    tmp_path: Path,
    ca: Authority,
) -> None:
    broker = start_broker(_bad_certificates(tmp_path / "certs", ca)[case])
    address = _tls(broker, broker.service_user, broker.service_password, ca.pem)
    driver = LoopDriver(mqtt.make_client("doorstep-service", address), address)
    with pytest.raises(ConnectionError, match="certificate verify failed"):
        asyncio.run(driver.start(timeout=5))
    assert f"as {broker.service_user}" not in broker.log_tail(200)


def test_the_service_keeps_trying_past_a_bad_certificate(
    start_broker: Callable[[tuple[Path, Path]], Mosquitto],
    tmp_path: Path,
    ca: Authority,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = server_cert(tmp_path / "good", by=ca)
    broker = start_broker(good)
    address = _tls(broker, broker.service_user, broker.service_password, ca.pem)
    caplog.set_level(logging.WARNING)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        connects: asyncio.Queue[str] = asyncio.Queue()
        refusals: asyncio.Queue[str] = asyncio.Queue()
        heard = _Heard(lambda text: loop.call_soon_threadsafe(refusals.put_nowait, text))
        logging.getLogger(mqtt.__name__).addHandler(heard)
        client = mqtt.make_client("doorstep-service", address)
        client.on_connect = lambda _c, _u, _f, reason, _p: connects.put_nowait(str(reason))
        driver = LoopDriver(client, address)
        await driver.start()
        try:
            assert await asyncio.wait_for(connects.get(), TIMEOUT) == "Success"
            # Stopped and started on this thread: the broker dies with its thread.
            start_broker(server_cert(tmp_path / "impostor", by=authority("Impostor CA")))
            for _ in range(2):  # refused, and tried again
                assert REFUSED in await asyncio.wait_for(refusals.get(), TIMEOUT)
            assert connects.empty()
            start_broker(good)
            assert await asyncio.wait_for(connects.get(), TIMEOUT) == "Success"
        finally:
            driver.stop()
            logging.getLogger(mqtt.__name__).removeHandler(heard)

    asyncio.run(asyncio.wait_for(main(), 30))


class _Heard(logging.Handler):
    """Hands each refused handshake's log line to `tell`, from whichever thread logs it."""

    def __init__(self, tell: Callable[[str], object]) -> None:
        super().__init__(logging.ERROR)
        self._tell = tell

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if REFUSED in text:
            self._tell(text)


def test_plain_mqtt_still_works_beside_the_tls_listener(
    broker: Mosquitto, hub_passwords: dict[str, str], service: Any
) -> None:
    own = topics.Topics(HUB_A)
    service.subscribe(own.events)
    address = mqtt.BrokerAddress.from_url(
        f"mqtt://{HUB_A}:{hub_passwords[HUB_A]}@127.0.0.1:{broker.port}"
    )
    client, _received = _hub(address)
    try:
        assert not hasattr(client.socket(), "version")
        client.publish(own.events, b"in clear", qos=1).wait_for_publish(TIMEOUT)
        assert service.next_message().payload == b"in clear"
    finally:
        mqtt.close(client)


def test_a_slow_tls_handshake_does_not_hold_up_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    silent = socket.socket()  # accepts connections (the backlog), never answers a hello
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    address = mqtt.BrokerAddress(
        "127.0.0.1", silent.getsockname()[1], "doorstep", "x", tls=True, ca_pem=authority().pem
    )
    handshakes: list[int] = []  # the threads the handshake ran on
    handshake = mqtt._LoggedHandshake.do_handshake

    def noted(sock: ssl.SSLSocket, block: bool = False) -> None:
        handshakes.append(threading.get_ident())
        handshake(sock, block)  # type: ignore[arg-type]

    monkeypatch.setattr(mqtt._LoggedHandshake, "do_handshake", noted)

    async def main() -> None:
        client = mqtt.make_client("doorstep-service", address)
        client.connect_timeout = 2.0
        driver = LoopDriver(client, address)
        with pytest.raises(ConnectionError, match="timed out"):
            await driver.start(timeout=1)

    try:
        asyncio.run(main())  # in this thread: the loop's
    finally:
        silent.close()
    assert handshakes  # the hello went out, and waited for an answer ...
    assert threading.get_ident() not in handshakes  # ... on another thread than the loop's
