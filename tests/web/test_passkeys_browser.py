"""A passkey in Debian's Chromium, through the real pages and `static/passkeys.js`: the
DevTools virtual authenticator (CTAP2, built in, resident keys, user verification) makes
the key. The service is reached at http://localhost:<port>, since an IP address is no
WebAuthn relying party ID."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect

from doorstep.app import create_app
from doorstep.broker.supervisor import free_port
from doorstep.settings import Settings
from doorstep.web import install

from .conftest import DESKTOP, _Server
from .support import PASSWORD


@pytest.fixture
def localhost_url(tmp_path: Path) -> Iterator[str]:
    """The service with the web installed, its public URL http://localhost:<port>."""
    port = free_port()
    url = f"http://localhost:{port}"
    app = create_app(Settings(data_dir=tmp_path / "svc", public_url=url), broker=None)
    install(app)
    server = _Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert server.ready.wait(30), "service did not start"
    yield url
    server.should_exit = True
    thread.join(15)


@pytest.fixture
def page(browser: Browser, localhost_url: str) -> Iterator[Page]:
    """A page with a virtual authenticator; no console or page error by the end."""
    context = browser.new_context(viewport=DESKTOP, base_url=localhost_url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    devtools = context.new_cdp_session(page)
    devtools.send("WebAuthn.enable", {"enableUI": False})
    devtools.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    yield page
    context.close()
    assert errors == []


def test_a_resident_adds_a_passkey_and_signs_in_with_it(page: Page) -> None:
    page.goto("/signup")
    page.locator("#name").fill("Pat")
    page.locator("#email").fill("pat@doorstep.test")
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/signin?notice=created")
    page.locator("#email").fill("pat@doorstep.test")
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url("**/homes")

    # From the security page; adding asks for the password again first.
    page.goto("/account/security")
    page.get_by_role("link", name="Manage passkeys").click()
    page.get_by_role("button", name="Add a passkey").click()
    page.wait_for_url("**/account/reauth?next=/account/passkeys")
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url("**/account/passkeys")
    page.get_by_role("button", name="Add a passkey").click()
    page.locator("#name").fill("This Chromium")
    page.get_by_role("button", name="Create the passkey").click()
    page.wait_for_url("**/account/passkeys?notice=added")
    expect(page.locator("#passkeys")).to_contain_text("This Chromium")
    expect(page.locator("#passkeys")).to_contain_text("Not yet")

    # Signed out, back in with the passkey alone.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signin?notice=signed-out")
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.get_by_role("button", name="Use my passkey").click()
    page.wait_for_url("**/homes")
    page.goto("/account/passkeys")
    expect(page.locator("#passkeys")).not_to_contain_text("Not yet")
