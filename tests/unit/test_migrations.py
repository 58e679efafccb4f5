"""The migrations build exactly the schema the models describe, and downgrade cleanly."""

from __future__ import annotations

import json
from datetime import datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from doorstep import db
from doorstep.schema import metadata


def test_models_and_migrations_agree(database_url: str) -> None:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert differences == []


def test_every_migration_downgrades(database_url: str) -> None:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
    engine.dispose()
    assert tables == set()


def test_emails_sent_before_the_scrub_lose_their_text(database_url: str) -> None:
    """0014: rows an older release left with a sent email's text (a live invitation or
    reset link) keep their subject, and lose the text; pending mail keeps it."""
    engine = db.make_engine(database_url)
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0013")
        for id_, state in (("msg-sent", "sent"), ("msg-pending", "pending")):
            connection.execute(
                text(
                    "INSERT INTO outbox (id, event_id, event_type, channel, target, payload,"
                    " state, attempts, next_attempt_at, created_at) VALUES (:id, :id,"
                    " 'grant.invited', 'email', 'ana@example.org', :payload, :state, 1,"
                    " :at, :at)"
                ),
                {"id": id_, "state": state, "at": datetime(2026, 11, 1),
                 "payload": '{"subject": "You are invited", "text": "https://x/#secret"}'},
            )  # fmt: skip
        command.upgrade(config, "head")
        rows = dict(connection.execute(text("SELECT id, payload FROM outbox")).all())
    engine.dispose()
    payloads = {key: value if isinstance(value, dict) else json.loads(value)
                for key, value in rows.items()}  # fmt: skip
    assert payloads["msg-sent"] == {"subject": "You are invited"}
    assert payloads["msg-pending"]["text"] == "https://x/#secret"
