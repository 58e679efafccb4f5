"""Behind a reverse proxy on another machine, the per-address limits (sign-in, password
reset, claim codes) count each client, not the proxy: `serve` takes X-Forwarded-For
from the proxies named in DOORSTEP_TRUSTED_PROXIES only, and from nobody else.

A real `serve` process on loopback; the "proxy on another machine" is a client bound to
127.0.0.2 (any 127/8 address reaches the service's 127.0.0.1), the untrusted peer is a
client on 127.0.0.1 (which the service trusts by default, and here must not)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from doorstep import demo
from doorstep.cli.config import describe
from doorstep.settings import Settings

PROXY = "127.0.0.2"
# auth.max_login_failures_per_minute = 1: six sign-in attempts a minute from one client.
ATTEMPTS = 6


@pytest.fixture
def service(tmp_path: Path) -> Iterator[demo.Service]:
    env = {
        "DOORSTEP_TRUSTED_PROXIES": f"{PROXY}, 192.0.2.0/24",
        "DOORSTEP_AUTH__MAX_LOGIN_FAILURES_PER_MINUTE": "1",
        "DOORSTEP_WRITER_PROCESS": "false",
    }
    started = demo.start_service(tmp_path / "service", env=env)
    yield started
    assert started.process is not None
    started.process.stop()


def _sign_in(client: httpx.Client, url: str, forwarded_for: str | None = None) -> int:
    headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
    form = {"grant_type": "password", "username": "nobody@doorstep.test", "password": "wrong"}
    return client.post(f"{url}/v1/auth/token", data=form, headers=headers).status_code


def test_the_limits_count_the_client_a_trusted_proxy_forwards(service: demo.Service) -> None:
    transport = httpx.HTTPTransport(local_address=PROXY)
    with httpx.Client(transport=transport, timeout=30) as proxy:
        assert [_sign_in(proxy, service.url, "203.0.113.7") for _ in range(ATTEMPTS)] == [
            401
        ] * ATTEMPTS
        assert _sign_in(proxy, service.url, "203.0.113.7") == 429
        # Another client behind the same proxy is not locked out by the first.
        assert _sign_in(proxy, service.url, "203.0.113.8") == 401
        assert _sign_in(proxy, service.url) == 401  # the proxy's own address


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(service: demo.Service) -> None:
    with httpx.Client(timeout=30) as peer:  # 127.0.0.1: not in DOORSTEP_TRUSTED_PROXIES
        statuses = [_sign_in(peer, service.url, f"203.0.113.{n}") for n in range(ATTEMPTS)]
        assert statuses == [401] * ATTEMPTS
        # A new forwarded address each time does not buy more attempts.
        assert _sign_in(peer, service.url, "198.51.100.1") == 429


def test_trusted_proxies_are_read_as_a_comma_separated_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOORSTEP_TRUSTED_PROXIES", " 10.0.0.5, 2001:db8::/32 ,")
    assert Settings().trusted_proxies == ["10.0.0.5", "2001:db8::/32"]
    monkeypatch.setenv("DOORSTEP_TRUSTED_PROXIES", "")
    assert Settings().trusted_proxies == []
    monkeypatch.delenv("DOORSTEP_TRUSTED_PROXIES")
    assert Settings().trusted_proxies == ["127.0.0.1", "::1"]


@pytest.mark.parametrize("given", ["*", "proxy.example", "10.0.0.1/8", "10.0.0.0/33"])
def test_a_trusted_proxy_is_an_address_or_a_network(given: str) -> None:
    """Anything else (uvicorn would take "*" as everyone, and a name or a network with
    host bits set as a literal that never matches) is refused, saying which."""
    with pytest.raises(ValidationError) as raised:
        Settings(trusted_proxies=[given])
    (problem,) = describe(raised.value)
    assert problem.startswith("trusted_proxies (DOORSTEP_TRUSTED_PROXIES): "), problem
