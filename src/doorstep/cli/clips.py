"""`doorstep clips`: the retention job and the privacy scan, run once on the database and
the clip store of a data directory (what `serve` runs periodically, or never)."""

from __future__ import annotations

from pathlib import Path

import click

from doorstep import db
from doorstep.cli.config import load_settings, open_database

_data_dir = click.option("--data-dir", type=click.Path(path_type=Path))
_database = click.option("--database-url")


@click.group()
def clips() -> None:
    """Entry clips at rest."""


@clips.command()
@_data_dir
@_database
def expire(data_dir: Path | None, database_url: str | None) -> None:
    """Delete the clips older than their home's retention (and uploads abandoned for
    `abandon_upload_hours`); each deletion destroys the clip's key and is audited."""
    from doorstep.clips.retention import run_once
    from doorstep.clips.storage import ClipStorage
    from doorstep.clock import SystemClock

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    engine = open_database(settings)
    storage = ClipStorage.under(settings.data_dir, settings.clips)
    expired, abandoned = run_once(
        db.make_session_factory(engine), storage, settings.clips, SystemClock()
    )
    engine.dispose()
    click.echo(f"{expired} clips expired, {abandoned} abandoned uploads removed")


@clips.command()
@_data_dir
@_database
def scan(data_dir: Path | None, database_url: str | None) -> None:
    """Decrypt every stored clip and check it lies inside its entry's recording window;
    exit 1 and list the clips that do not."""
    from doorstep.clips.service import scan as scan_store
    from doorstep.clips.storage import ClipStorage
    from doorstep.clock import SystemClock

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    engine = open_database(settings)
    storage = ClipStorage.under(settings.data_dir, settings.clips)
    with db.make_session_factory(engine)() as session:
        findings = scan_store(session, storage, now=SystemClock().now())
    engine.dispose()
    clip_count = len({name.split("/", 1)[0] for name in storage.store.list()})
    if not findings:
        click.echo(f"{clip_count} clips in the store, all inside their entry's window")
        return
    for finding in findings:
        click.echo(
            f"clip {finding.clip_id} (entry {finding.entry_id}): {finding.problem}", err=True
        )
    raise SystemExit(1)
