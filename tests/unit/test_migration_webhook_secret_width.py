"""0017: a carrier's webhook secret column holds a sealed secret (`notify.sealing`, longer
than the plain one, which PostgreSQL would refuse at the old width); going back turns
off the endpoints whose secret the old code cannot read, and keeps the plain ones."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from doorstep import db
from doorstep.notify import sealing, signing
from doorstep.web.security import load_or_create_key


def test_a_sealed_secret_fits_and_going_back_turns_its_endpoint_off(
    database_url: str, tmp_path: Path
) -> None:
    key = load_or_create_key(tmp_path, sealing.KEY_FILE)
    sealed, plain = sealing.seal(key, "whk-sealed", signing.new_secret()), signing.new_secret()
    engine = db.make_engine(database_url)
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        for carrier, endpoint, secret in (
            ("car1", "whk-sealed", sealed),
            ("car2", "whk-plain", plain),
        ):
            connection.execute(
                text("INSERT INTO carriers (id, name, created_at) VALUES (:id, 'C', :at)"),
                {"id": carrier, "at": datetime(2026, 11, 1)},
            )
            connection.execute(
                text(
                    "INSERT INTO webhook_endpoints (id, carrier_id, url, secret, active,"
                    " created_at) VALUES (:id, :carrier, 'https://x.example/h', :secret, :on, :at)"
                ),
                {"id": endpoint, "carrier": carrier, "secret": secret, "on": True,
                 "at": datetime(2026, 11, 1)},
            )  # fmt: skip
        command.downgrade(config, "0016")
        rows = {
            id_: (secret, bool(active))
            for id_, secret, active in connection.execute(
                text("SELECT id, secret, active FROM webhook_endpoints")
            )
        }
    engine.dispose()
    assert rows["whk-plain"] == (plain, True)
    assert rows["whk-sealed"][1] is False and len(rows["whk-sealed"][0]) <= 100
