"""0015: emails an older release set aside as `skipped` (no SMTP server configured) lose
their text, as sent ones did in 0014; mail still pending keeps it."""

from __future__ import annotations

import json
from datetime import datetime

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from doorstep import db

PAYLOAD = '{"subject": "You are invited", "text": "https://x/guest/accept#secret"}'


def test_emails_skipped_before_the_scrub_lose_their_text(database_url: str) -> None:
    engine = db.make_engine(database_url)
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0014")
        for id_, state in (("msg-skipped", "skipped"), ("msg-pending", "pending")):
            connection.execute(
                text(
                    "INSERT INTO outbox (id, event_id, event_type, channel, target, payload,"
                    " state, attempts, next_attempt_at, created_at, last_error) VALUES (:id,"
                    " :id, 'grant.invited', 'email', 'ana@example.org', :payload, :state, 1,"
                    " :at, :at, 'no SMTP server is configured (notify.smtp_host)')"
                ),
                {"id": id_, "state": state, "at": datetime(2026, 11, 1), "payload": PAYLOAD},
            )
        command.upgrade(config, "head")
        rows = dict(connection.execute(text("SELECT id, payload FROM outbox")).all())
    engine.dispose()
    payloads = {
        key: value if isinstance(value, dict) else json.loads(value) for key, value in rows.items()
    }
    assert payloads["msg-skipped"] == {"subject": "You are invited"}
    assert payloads["msg-pending"]["text"] == "https://x/guest/accept#secret"
