"""The account security page's two-step set-up: wrong codes at its confirm count toward
the account's code lock, as at sign-in (`accounts.twofactor`); locked, the page says so
(429) on the set-up form, which waits for the lock to end."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import timedelta

from doorstep.accounts import totp, twofactor

from .conftest import Standalone

SECURITY = "/account/security"


def test_wrong_set_up_codes_lock_the_account_codes(
    standalone: Callable[..., Standalone],
) -> None:
    app = standalone()
    client = app.web()
    client.sign_up("web-2fa-confirm-lock@doorstep.test")
    client.sign_in("web-2fa-confirm-lock@doorstep.test")
    client.reauth(SECURITY)
    page = client.post("/account/totp/setup", {}, csrf_from=SECURITY)
    match = re.search(r'id="totp-key">([A-Z2-7 ]+)<', page.text)
    assert match, page.text
    key = match.group(1).replace(" ", "")
    secret = base64.b32decode(key + "=" * (-len(key) % 8))
    right = totp.totp(secret, app.clock.timestamp())
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    for _ in range(twofactor.MAX_FAILURES):
        refused = client.post("/account/totp/confirm", {"code": wrong}, csrf_from=SECURITY)
        assert refused.status_code == 422, refused.text
    locked = client.post("/account/totp/confirm", {"code": right}, csrf_from=SECURITY)
    assert locked.status_code == 429, locked.text
    assert "too many wrong codes" in locked.text.lower()
    assert f'id="totp-key">{match.group(1)}<' in locked.text  # the set-up form, not a dead end

    app.clock.set(app.clock.now() + timedelta(seconds=twofactor.LOCK_SECONDS + 1))
    client.reauth(SECURITY)
    code = totp.totp(secret, app.clock.timestamp())
    done = client.post("/account/totp/confirm", {"code": code}, csrf_from=SECURITY)
    assert done.status_code == 200, done.text
    assert "Save your recovery codes" in done.text
