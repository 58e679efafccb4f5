"""The service's MQTT client on the event loop (`LoopDriver`), against the real Mosquitto:
publishing from the loop and from other threads, receiving, and surviving a broker
restart without losing what was published while the broker was down."""

from __future__ import annotations

import asyncio
import fcntl
import socket
import termios
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import paho.mqtt.client as paho
import pytest

from doorstep.broker import Mosquitto
from doorstep.broker.supervisor import free_port
from doorstep.protocol import mqtt, topics
from doorstep.protocol.mqtt_asyncio import LoopDriver
from polling import poll

TIMEOUT = 10.0


def _address(broker: Mosquitto, password: str | None = None) -> mqtt.BrokerAddress:
    return mqtt.BrokerAddress(
        broker.host, broker.port, broker.service_user, password or broker.service_password
    )


@asynccontextmanager
async def _driver(
    broker: Mosquitto, on_client: Callable[[paho.Client], None] = lambda _c: None
) -> AsyncIterator[LoopDriver]:
    client = mqtt.make_client("doorstep-service", _address(broker))
    on_client(client)
    driver = LoopDriver(client, _address(broker))
    await driver.start()
    try:
        yield driver
    finally:
        driver.stop()


def test_publishes_from_the_loop_and_from_other_threads_arrive(
    broker: Mosquitto, hub_a: Any, hub_passwords: dict[str, str]
) -> None:
    own = topics.Topics(next(iter(hub_passwords)))
    hub_a.subscribe(own.cmd)

    async def main() -> list[bytes]:
        async with _driver(broker) as driver:
            driver.publish(own.cmd, b"from the loop", qos=1)
            other = threading.Thread(target=driver.publish, args=(own.cmd, b"from a thread"),
                                     kwargs={"qos": 1})  # fmt: skip
            other.start()
            other.join()
            first = await asyncio.to_thread(hub_a.next_message)
            second = await asyncio.to_thread(hub_a.next_message)
            return sorted([first.payload, second.payload])

    assert asyncio.run(main()) == [b"from a thread", b"from the loop"]


def test_messages_arrive_on_the_loop(
    broker: Mosquitto, hub_a: Any, hub_passwords: dict[str, str]
) -> None:
    own = topics.Topics(next(iter(hub_passwords)))

    async def main() -> tuple[bytes, bool]:
        loop = asyncio.get_running_loop()
        received: asyncio.Queue[tuple[bytes, bool]] = asyncio.Queue()
        subscribed = loop.create_future()

        def on_client(client: paho.Client) -> None:
            client.on_connect = lambda c, *_: c.subscribe(own.events, qos=1)
            client.on_subscribe = lambda *_: subscribed.set_result(True)
            client.on_message = lambda _c, _u, message: received.put_nowait(
                (message.payload, threading.current_thread() is threading.main_thread())
            )

        async with _driver(broker, on_client):
            await asyncio.wait_for(subscribed, TIMEOUT)
            hub_a.publish(own.events, b"an event")
            return await asyncio.wait_for(received.get(), TIMEOUT)

    assert asyncio.run(main()) == (b"an event", True)  # handled on the loop's thread


def test_messages_that_arrived_together_are_all_handled_in_one_pass(
    broker: Mosquitto, hub_a: Any, hub_passwords: dict[str, str]
) -> None:
    # A hub's event and its reply, read in one pass, are stored in one transaction. Read
    # one packet per pass (paho's own way), the loop would run other work between them.
    own = topics.Topics(next(iter(hub_passwords)))
    payloads = [b"event", b"reply", b"status"]
    # Each as Mosquitto sends it to an MQTT 5 subscriber at QoS 1: fixed header (2),
    # topic, packet id, properties length (0), payload.
    expected = sum(2 + 2 + len(own.events) + 2 + 1 + len(payload) for payload in payloads)

    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        seen: list[object] = []
        subscribed = loop.create_future()

        def on_message(_c: Any, _u: Any, message: paho.MQTTMessage) -> None:
            if not seen:
                loop.call_soon(seen.append, "the next pass")
            seen.append(message.payload)

        def on_client(client: paho.Client) -> None:
            client.on_connect = lambda c, *_: c.subscribe(own.events, qos=1)
            client.on_subscribe = lambda *_: subscribed.set_result(True)
            client.on_message = on_message

        async with _driver(broker, on_client) as driver:
            await asyncio.wait_for(subscribed, TIMEOUT)
            for payload in payloads:
                hub_a.publish(own.events, payload)
            assert driver._socket is not None
            fd = driver._socket.fileno()
            # The loop is held here until all three have arrived at its socket.
            waiting = poll(lambda: _unread_bytes(fd), lambda n: n >= expected, TIMEOUT)
            assert waiting == expected
            while len(seen) < len(payloads) + 1:
                await asyncio.sleep(0)
            return seen

    assert asyncio.run(main()) == [*payloads, "the next pass"]


def _unread_bytes(fd: int) -> int:
    buffer = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return int.from_bytes(buffer, "little")


def test_a_broker_restart_loses_nothing_published_while_it_was_down(
    broker: Mosquitto,
    hub_hashes: dict[str, str],
    hub_passwords: dict[str, str],
    connect: Callable[..., Any],
) -> None:
    hub_id = next(iter(hub_hashes))
    ack_topic = topics.Topics(hub_id).ack

    async def main() -> None:
        connects: asyncio.Queue[str] = asyncio.Queue()
        acknowledged: asyncio.Queue[int] = asyncio.Queue()

        def on_client(client: paho.Client) -> None:
            client.on_connect = lambda _c, _u, _f, reason, _p: connects.put_nowait(str(reason))
            client.on_publish = lambda _c, _u, mid, *_: acknowledged.put_nowait(mid)

        async with _driver(broker, on_client) as driver:
            assert await asyncio.wait_for(connects.get(), TIMEOUT) == "Success"
            # Stopped and started on this thread, not in a worker: the broker is set to
            # die with the thread that started it.
            broker.stop()
            # Published while the broker is down: held by the client, sent on reconnect.
            driver.publish(ack_topic, b'{"epoch": 1, "through_seq": 7}', qos=1, retain=True)
            broker.start(hub_hashes)
            assert await asyncio.wait_for(connects.get(), TIMEOUT) == "Success"
            await asyncio.wait_for(acknowledged.get(), TIMEOUT)  # the broker has it

    asyncio.run(main())
    # Retained, so the hub gets it whenever it subscribes.
    hub = connect(hub_id, hub_passwords[hub_id], hub_id)
    hub.subscribe(ack_topic)
    assert hub.next_message().payload == b'{"epoch": 1, "through_seq": 7}'


def test_a_refused_or_unreachable_broker_fails_start_with_a_clear_error(
    broker: Mosquitto,
) -> None:
    async def start(address: mqtt.BrokerAddress) -> None:
        driver = LoopDriver(mqtt.make_client("doorstep-service", address), address)
        await driver.start(timeout=5)

    with pytest.raises(ConnectionError, match=r"Not authorized|Bad user name or password"):
        asyncio.run(start(_address(broker, password="wrong")))
    nobody = mqtt.BrokerAddress(broker.host, free_port(), "doorstep-service", "x")
    with pytest.raises(ConnectionError, match="refused"):
        asyncio.run(start(nobody))


def test_a_broker_that_never_answers_fails_start_within_the_timeout() -> None:
    silent = socket.socket()  # accepts connections (the backlog) and never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        address = mqtt.BrokerAddress("127.0.0.1", silent.getsockname()[1], "doorstep", "x")
        driver = LoopDriver(mqtt.make_client("doorstep-service", address), address)
        with pytest.raises(ConnectionError, match="no answer from the broker"):
            asyncio.run(driver.start(timeout=0.5))
    finally:
        silent.close()


def test_a_connection_lost_without_notice_is_made_again(broker: Mosquitto) -> None:
    # paho can drop its socket without calling on_disconnect (here: closed under it, as
    # a reconnect whose socket dies while it is made would leave it); the driver's
    # once-a-second look must notice and connect again.
    async def main() -> list[str]:
        connects: asyncio.Queue[str] = asyncio.Queue()

        def on_client(client: paho.Client) -> None:
            client.on_connect = lambda _c, _u, _f, reason, _p: connects.put_nowait(str(reason))

        async with _driver(broker, on_client) as driver:
            first = await asyncio.wait_for(connects.get(), TIMEOUT)
            driver._client._sock_close()  # no on_disconnect: nobody was told
            second = await asyncio.wait_for(connects.get(), TIMEOUT)
            return [first, second]

    assert asyncio.run(main()) == ["Success", "Success"]


def test_a_burst_larger_than_the_socket_arrives_whole_and_in_order(
    broker: Mosquitto, hub_a: Any, hub_passwords: dict[str, str]
) -> None:
    # Published in one pass of the loop, the burst is written together; at 12 MB it
    # overfills the socket, so the rest must go out as the socket drains.
    own = topics.Topics(next(iter(hub_passwords)))
    hub_a.subscribe(own.cmd)
    count, size = 1500, 8192
    bodies = [n.to_bytes(4, "big") * (size // 4) for n in range(count)]

    async def main() -> list[bytes]:
        async with _driver(broker) as driver:
            driver.publish(own.cmd, bodies[0], qos=1)
            assert driver._client.want_write()  # not written yet: it waits for the rest
            for body in bodies[1:]:
                driver.publish(own.cmd, body, qos=1)
            return await asyncio.to_thread(lambda: [hub_a.next_message().payload for _ in bodies])

    assert asyncio.run(main()) == bodies


def test_stopping_says_goodbye_so_the_broker_sends_no_last_will(
    broker: Mosquitto, hub_a: Any, hub_passwords: dict[str, str]
) -> None:
    # The DISCONNECT must be written before the socket closes; without it the broker
    # would take the stop for a lost connection and publish the will.
    own = topics.Topics(next(iter(hub_passwords)))
    hub_a.subscribe(own.cmd)

    async def main() -> None:
        client = mqtt.make_client("doorstep-service", _address(broker), will=(own.cmd, b"lost"))
        driver = LoopDriver(client, _address(broker))
        await driver.start()
        driver.stop()

    asyncio.run(main())
    # A sentinel from another connection, published after the stop: the will would be
    # delivered before it.
    other = mqtt.make_client("doorstep-other", _address(broker))
    mqtt.connect(other, _address(broker))
    try:
        other.publish(own.cmd, b"sentinel", qos=1).wait_for_publish(TIMEOUT)
    finally:
        other.disconnect()
        other.loop_stop()
    assert hub_a.next_message().payload == b"sentinel"
