"""Where a webhook may go, and the HTTP client that takes it there.

A carrier names its endpoint by URL, so the service must not be made to call its own
loopback, its private network or a cloud metadata address. The check and the connection
use the same DNS answer: `PublicBackend.connect_tcp` resolves the host, refuses it unless
every address is public, and connects to an address it checked, so a name whose answer
changes between a check and the connect (DNS rebinding) cannot slip through. TLS still
verifies the certificate against the URL's host name.

Each request has one deadline, from the connect to the response's headers (the body is
never read, and a connection is never reused), so an endpoint that answers a byte at a
time cannot hold the dispatcher, and the resident's mail behind it, for longer.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx

_HTTP_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ConnectionNotAvailable,
)


def redacted(url: str) -> str:
    """`url` as records and logs may show it: scheme, host, port and path, without the
    userinfo, query or fragment (where a receiver may have put a token of its own)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Refused(Exception):
    """The URL is not one the service may call (not public, or not a valid URL)."""


class Unreachable(Exception):
    """The endpoint did not answer in time, or the connection failed."""


class WebhookClient:
    """POSTs to carriers' endpoints; `timeout` bounds each request as a whole."""

    def __init__(self, *, timeout: float, allow_private: bool) -> None:
        self._timeout = timeout
        self._pool = httpcore.ConnectionPool(
            max_keepalive_connections=0,
            network_backend=PublicBackend(allow_private=allow_private, total_seconds=timeout),
        )

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """Send `body` to `url`; returns the response's status code."""
        try:
            parsed = httpx.Request("POST", url, headers=headers, content=body)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise Refused(f"webhook URL is not valid: {exc}") from exc
        request = httpcore.Request(
            method=b"POST",
            url=httpcore.URL(
                scheme=parsed.url.raw_scheme,
                host=parsed.url.raw_host,
                port=parsed.url.port,
                target=parsed.url.raw_path,
            ),
            headers=parsed.headers.raw,
            content=body,
            extensions={"timeout": dict.fromkeys(("connect", "read", "write", "pool"),
                                                 self._timeout)},
        )  # fmt: skip
        try:
            response = self._pool.handle_request(request)
            response.close()
        except _HTTP_ERRORS as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
        return response.status

    def close(self) -> None:
        self._pool.close()


class PublicBackend(httpcore.NetworkBackend):
    """Connects only to public addresses (unless `allow_private`), each connection
    living at most `total_seconds`."""

    def __init__(self, *, allow_private: bool, total_seconds: float) -> None:
        self._allow_private = allow_private
        self._total = total_seconds
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        deadline = time.monotonic() + self._total
        failure: Exception = httpcore.ConnectError(f"no address for {host}")
        for address in self._addresses(host, port):
            try:
                stream = self._inner.connect_tcp(
                    address, port, _left(deadline, timeout), local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return _Deadline(stream, deadline)
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise Refused("webhooks go over TCP only")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)

    def _addresses(self, host: str, port: int) -> list[str]:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        if not self._allow_private:
            for address in addresses:
                if not ipaddress.ip_address(address.split("%")[0]).is_global:
                    raise Refused(f"webhook host {host} resolves to a non-public address")
        return addresses


class _Deadline(httpcore.NetworkStream):
    """A stream whose every read and write waits no later than `deadline`."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(self._deadline, timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(self._deadline, timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, _left(self._deadline, timeout))
        return _Deadline(tls, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _left(deadline: float, timeout: float | None) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the endpoint took longer than the webhook timeout")
    return left if timeout is None else min(timeout, left)
