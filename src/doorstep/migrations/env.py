"""Alembic environment: runs against the connection `doorstep.db.upgrade` hands it, or
against DOORSTEP_DATABASE_URL when run from the alembic command line."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from doorstep.db import make_engine
from doorstep.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(os.environ.get("DOORSTEP_DATABASE_URL", "sqlite:///var/doorstep.db"))
    with engine.begin() as conn:
        _run(conn)
