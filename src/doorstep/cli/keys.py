"""`doorstep keys`: rotate the issuer keys grants and hubs' documents are signed with.

The steps (`access.keys`): `add` a key (`serve` publishes it: hubs learn it); once `list`
shows every hub trusts it, `use` it (`serve` signs with it); once the grants the old key
signed have expired, `retire` the old key (`serve` stops publishing it: hubs forget it).
A running `serve` takes each change up within seconds (`grants.rotation`); a stopped
one, when it starts.
"""

from __future__ import annotations

from pathlib import Path

import click

from doorstep import db
from doorstep.access import keys as issuer_keys
from doorstep.cli.config import load_settings, open_database

_TAKEN_UP = "A running `doorstep serve` takes this up within seconds (no restart needed)."
_data_dir = click.option("--data-dir", type=click.Path(path_type=Path))
_database = click.option("--database-url")


def _keys_dir(data_dir: Path | None, database_url: str | None) -> tuple[Path, dict[str, int]]:
    """The keys directory and the version each enrolled hub last reported applying."""
    from doorstep.grants.shadow import enrolled_reported_versions

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    engine = open_database(settings)
    try:
        with db.make_session_factory(engine)() as session:
            db.read_only(session)
            reported = enrolled_reported_versions(session)
    finally:
        engine.dispose()
    return settings.data_dir / "keys", reported


def _trusting(directory: Path, kid: str, reported: dict[str, int]) -> int:
    published = issuer_keys.read_published(directory)
    return sum(published.trusted_by(kid, hub, version) for hub, version in reported.items())


@click.group()
def keys() -> None:
    """Issuer keys: list, add, use, retire. A running `doorstep serve` takes each change
    up within seconds, without a restart."""


@keys.command("list")
@_data_dir
@_database
def list_keys(data_dir: Path | None, database_url: str | None) -> None:
    """Each key: its id, when it was made, whether it signs, whether the service publishes
    it, and how many enrolled hubs have applied a document that trusts it."""
    directory, reported = _keys_dir(data_dir, database_url)
    try:
        published = issuer_keys.read_published(directory)
        for key in issuer_keys.listing(directory):
            trusting = _trusting(directory, key.kid, reported)
            click.echo(
                f"{key.kid}  created {key.created:%Y-%m-%d %H:%M} UTC"
                f"  {'signing' if key.signing else 'not signing'}"
                f"  {'published' if key.kid in published.kids else 'not published yet'}"
                f"  trusted by {trusting} of {len(reported)} hubs"
            )
    except issuer_keys.IssuerKeyError as exc:
        raise click.ClickException(str(exc)) from None


@keys.command()
@_data_dir
@_database
def add(data_dir: Path | None, database_url: str | None) -> None:
    """Make a new key. It does not sign: `doorstep serve` publishes it to every hub in its
    next desired document; `doorstep keys use` makes it sign once they have all applied
    it."""
    directory, _reported = _keys_dir(data_dir, database_url)
    try:
        kid = issuer_keys.add(directory)
    except issuer_keys.IssuerKeyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"issuer key {kid} added; it does not sign yet. A running `doorstep serve` publishes"
        " it to every hub within seconds (no restart needed)."
    )
    click.echo(f"Once `doorstep keys list` shows every hub trusts it: `doorstep keys use {kid}`.")


@keys.command()
@_data_dir
@_database
@click.argument("kid")
@click.option(
    "--force",
    is_flag=True,
    help="Even though some hubs do not trust it yet: they refuse its grants until they do.",
)
def use(data_dir: Path | None, database_url: str | None, kid: str, force: bool) -> None:
    """Make KID the key that signs grants and hubs' documents. Refused while the service
    has not published it, or an enrolled hub has not applied a document that trusts it
    (unless --force)."""
    directory, reported = _keys_dir(data_dir, database_url)
    try:
        if kid not in {key.kid for key in issuer_keys.listing(directory)}:
            raise issuer_keys.IssuerKeyError(f"no issuer key {kid!r} (see `doorstep keys list`)")
        if kid not in issuer_keys.read_published(directory).kids and not force:
            raise issuer_keys.IssuerKeyError(
                f"{kid} has not been published yet: wait a few seconds for `doorstep serve` to"
                " publish it (start it, if it is not running), so that hubs learn it (or pass"
                " --force)."
            )
        behind = len(reported) - _trusting(directory, kid, reported)
        if behind and not force:
            raise issuer_keys.IssuerKeyError(
                f"{behind} of {len(reported)} enrolled hubs have not applied a document that"
                f" trusts {kid} yet, and would refuse every grant it signs. Wait until"
                " `doorstep keys list` shows all of them, or pass --force."
            )
        issuer_keys.use(directory, kid)
    except issuer_keys.IssuerKeyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{kid} is the signing key. {_TAKEN_UP}")


@keys.command()
@_data_dir
@_database
@click.argument("kid")
def retire(data_dir: Path | None, database_url: str | None, kid: str) -> None:
    """Stop publishing KID (never the signing key) and move its file to keys/retired/,
    where nothing uses it: delete it from there when you no longer need it. Once a hub
    applies its next desired document it refuses every grant KID signed, even one not
    expired yet: retire a key once its grants have expired, or at once if it is
    compromised."""
    directory, _reported = _keys_dir(data_dir, database_url)
    try:
        kept = issuer_keys.retire(directory, kid)
    except issuer_keys.IssuerKeyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"issuer key {kid} retired, its file kept in {kept}. {_TAKEN_UP} Hubs refuse the"
        " grants it signed once they apply their next document."
    )
