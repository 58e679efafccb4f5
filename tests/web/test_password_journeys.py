"""Passwords in Debian's Chromium (Playwright): from the sign-in page's "Forgot your
password?" to the emailed link (mailed over real SMTP; its token moved out of the address
bar), a refused and then an accepted new password, signing in with it, and changing it
again from account security. At 360 px and 1280 px, with the accessibility and layout
checks of the other journeys and no console errors."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import ViewportSize, expect
from sqlalchemy import select

from doorstep.notify.models import OutboxMessage
from doorstep.settings import NotifySettings
from smtp_mailbox import Mailbox, serving

from .conftest import DESKTOP, PHONE, Watched
from .support import PASSWORD, new_email
from .test_journeys import check_page

NEW_PASSWORD = "a much longer passphrase 42"
LATEST_PASSWORD = "the third password of this story"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    with serving() as served:
        yield served


@pytest.fixture
def notify_settings(mailbox: tuple[Mailbox, int]) -> NotifySettings:
    return NotifySettings(smtp_host="127.0.0.1", smtp_port=mailbox[1], poll_seconds=0.1)


def _reset_token(live: Any, box: Mailbox, email: str) -> str:
    """The token of the one reset link mailed to `email`, from the mail as received."""
    with live.sessions() as session:
        event_ids = session.scalars(
            select(OutboxMessage.event_id).where(
                OutboxMessage.target == email, OutboxMessage.event_type == "account.password_reset"
            )
        ).all()
    (event_id,) = event_ids
    mail = box.sent_for(event_id)
    assert mail.to == [email], mail
    match = re.search(r"/password/reset#([A-Za-z0-9_-]+)", mail.text)
    assert match, mail
    return match.group(1)


def test_forgot_reset_sign_in_and_change_the_password(
    live: Any, mailbox: tuple[Mailbox, int], pages: Callable[[str, ViewportSize], Watched]
) -> None:
    email = new_email("forgetful")
    body = {"email": email, "name": "Robin", "password": PASSWORD}
    assert httpx.post(f"{live.url}/v1/residents", json=body, timeout=30).status_code == 201
    phone = pages("password-phone", PHONE)
    page = phone.page

    page.goto("/signin")
    page.get_by_role("link", name="Forgot your password?").click()
    page.wait_for_url("**/password/forgot")
    check_page(phone, "forgot")
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("status")).to_contain_text(f"If an account uses {email}")
    check_page(phone, "forgot-sent")

    # The link from the email: its token leaves the address bar as the page opens.
    token = _reset_token(live, mailbox[0], email)
    page.goto(f"/password/reset#{token}")
    expect(page.get_by_role("button", name="Set new password")).to_be_visible()
    assert page.url.endswith("/password/reset")
    assert page.locator("#reset-token").input_value() == token
    check_page(phone, "reset")

    phone.expect_status(422)
    page.get_by_label("New password", exact=True).fill("short")
    page.get_by_role("button", name="Set new password").click()
    expect(page.locator("#password-error")).to_have_text("At least 10 characters.")
    expect(page.get_by_label("New password", exact=True)).to_be_focused()
    check_page(phone, "reset-refused")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set new password").click()
    expect(page.get_by_role("heading", name="Your password is changed")).to_be_visible()
    check_page(phone, "reset-done")

    page.get_by_role("link", name="Sign in").click()
    page.wait_for_url("**/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/homes")

    # And changed again, from account security.
    page.goto("/account/security")
    page.get_by_role("link", name="Change password").click()
    page.wait_for_url("**/account/password")
    check_page(phone, "change")
    page.get_by_label("Current password").fill(NEW_PASSWORD)
    page.get_by_label("New password").fill(LATEST_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    page.wait_for_url("**/account/security?notice=password-changed")
    expect(page.get_by_role("status")).to_contain_text("Your password is changed.")
    assert page.get_by_role("link", name="Homes").is_visible()  # still signed in
    check_page(phone, "changed")

    # Without a link, the page says where to get one.
    desktop = pages("password-desktop", DESKTOP)
    desktop.page.goto("/password/reset")
    expect(desktop.page.locator("#no-reset-token")).to_be_visible()
    expect(desktop.page.locator("#reset-form")).to_be_hidden()
    check_page(desktop, "reset-without-link")


@pytest.mark.parametrize(
    ("path", "notice"), [("/password/reset", "#no-reset-token"), ("/guest/accept", "#no-token")]
)
def test_a_link_mangled_on_its_way_says_to_open_it_again(
    live: Any, pages: Callable[[str, ViewportSize], Watched], path: str, notice: str
) -> None:
    """A fragment that does not decode (a stray "%" from a mail client) is no token: the
    page says to open the link again, out of the address bar, with no script error."""
    phone = pages(f"mangled-link{path.replace('/', '-')}", PHONE)
    page = phone.page
    page.goto(f"{path}#%E0%A4%A")
    expect(page.locator(notice)).to_be_visible()
    assert page.url.endswith(path)
