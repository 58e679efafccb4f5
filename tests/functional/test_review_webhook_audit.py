"""A webhook URL may carry the receiver's own secret (a token in its query string, as many
receivers authenticate): the audit log, which operators read and export, records only
where the webhooks go (scheme, host, port, path), on the live service."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from doorstep import demo
from doorstep.audit.models import AuditEvent
from doorstep.notify.targets import redacted

TOKEN = "receiver-token-7f3a"
URL = f"https://hooks.example.org:8443/doorstep/events?token={TOKEN}&v=1#{TOKEN}"


def test_the_audit_log_records_a_webhook_url_without_its_query(
    live: Any, world: demo.World
) -> None:
    created = world.carrier.call("PUT", "/v1/carrier/webhook", 200, json={"url": URL})
    # The carrier's own view keeps the URL it gave: it is theirs.
    assert created["url"] == URL
    assert world.carrier.call("GET", "/v1/carrier/webhook")["url"] == URL
    with live.sessions() as session:
        (record,) = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "webhook:set")
        ).all()
    assert record.data == {"url": "https://hooks.example.org:8443/doorstep/events"}
    assert TOKEN not in str(record.data)


def test_a_redacted_url_keeps_where_it_goes_and_nothing_else() -> None:
    assert redacted("https://user:pw@hooks.example.org/a/b?c=d#e") == (
        "https://hooks.example.org/a/b"
    )
    assert redacted("http://[2001:db8::1]:8080/hook;p?x") == "http://[2001:db8::1]:8080/hook;p"
    assert redacted("https://hooks.example.org") == "https://hooks.example.org"
