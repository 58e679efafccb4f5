"""`doorstep broker files`: the password file and ACL of a Mosquitto that `serve` does not
run (DOORSTEP_BROKER_URL), written from the database as `serve` writes its own broker's.

Hubs' `$7$` hashes come from the database (`homes.service.broker_credentials`); the
service users' from a file the operator keeps (`mosquitto_passwd` writes it), so no
password, and no service hash, is made, printed or stored by doorstep. Each `serve`
process needs a service user of its own: the broker takes the user name as client id
(`use_username_as_clientid true`), so two processes under one name push each other off.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from doorstep import db
from doorstep.broker.config import BrokerUser, render_acl, render_passwords
from doorstep.cli.config import cannot_open, load_settings, open_database


@click.group()
def broker() -> None:
    """A Mosquitto that `doorstep serve` does not run (DOORSTEP_BROKER_URL)."""


@broker.command()
@click.option("--data-dir", type=click.Path(path_type=Path))
@click.option("--database-url")
@click.option(
    "--password-file",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The broker's password_file: written (0600) with the service users and every "
    "enrolled hub.",
)
@click.option(
    "--acl-file",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The broker's acl_file: written (0600); each hub reaches only its own topics.",
)
@click.option(
    "--service-user",
    "service_users",
    multiple=True,
    required=True,
    metavar="NAME",
    help="A user with the service's reach (every hub's topics); one per `serve` process. "
    "Repeat for each.",
)
@click.option(
    "--service-password-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="user:$7$hash lines (as `mosquitto_passwd` writes them) holding each "
    "--service-user's hash; other lines are ignored. Kept by you, never written here.",
)
@click.option(
    "--watch",
    "watch_seconds",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Keep running: read the database every this many seconds and rewrite the files "
    "(and reload the broker) when they change.",
)
@click.option(
    "--reload-pid",
    metavar="PID|PIDFILE",
    help="The broker's pid, or its pid file: sent SIGHUP after each change, so it reloads.",
)
def files(
    data_dir: Path | None,
    database_url: str | None,
    password_file: Path,
    acl_file: Path,
    service_users: tuple[str, ...],
    service_password_file: Path,
    watch_seconds: float | None,
    reload_pid: str | None,
) -> None:
    """Write the password file and ACL for an external broker, from the database.

    Hubs enrolled through `serve` get broker credentials only this way when
    DOORSTEP_BROKER_URL is set. Point the broker's `password_file` and `acl_file` at
    these paths, with `per_listener_settings false`, `allow_anonymous false` and
    `use_username_as_clientid true` (as `serve` configures its own). The files are
    replaced atomically, mode 0600, owned by whoever runs this: run it as the broker's
    user. Without --watch it writes once and exits.
    """
    if len({password_file.resolve(), acl_file.resolve(), service_password_file.resolve()}) < 3:
        raise click.UsageError("the password file, ACL and service password file must differ")
    service_users = tuple(dict.fromkeys(service_users))
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    _service_users(service_password_file, service_users)  # a mistake stops us before the database
    engine = open_database(settings)
    writer = _Writer(
        db.make_session_factory(engine),
        service_users,
        service_password_file,
        password_file,
        acl_file,
        reload_pid,
    )
    try:
        if not writer.sync():
            click.echo("the files are up to date")
        while watch_seconds is not None:
            time.sleep(watch_seconds)
            try:
                writer.sync()
            except click.ClickException as exc:  # the files stay as they were; try again
                click.echo(f"Error: {exc.format_message()}", err=True)
    finally:
        engine.dispose()


@dataclass
class _Writer:
    """Where the files come from and go to, and whether a reload is still owed."""

    sessions: sessionmaker[Session]
    service_users: tuple[str, ...]
    service_password_file: Path
    password_file: Path
    acl_file: Path
    reload_pid: str | None
    reload_pending: bool = False

    def sync(self) -> bool:
        """Render both files; if either differs from what is on disk, replace it and
        reload the broker. Nothing is written unless both render. True if written."""
        # Read each round, so that --watch takes up a changed service hash too.
        services = _service_users(self.service_password_file, self.service_users)
        hubs = _hubs(self.sessions)
        try:
            users = [*services, *(BrokerUser(hub, hubs[hub]) for hub in sorted(hubs))]
            acl = render_acl(self.service_users, hubs)
        except ValueError as exc:  # a hub id that is a service user's name
            raise click.ClickException(str(exc)) from None
        changed = _replace(self.password_file, render_passwords(users))
        changed = _replace(self.acl_file, acl) or changed
        if changed:
            click.echo(f"wrote the files: hubs: {len(hubs)}, service users: {len(services)}")
        if changed or self.reload_pending:
            self.reload_pending = True  # until the broker is signalled: --watch tries again
            _reload(self.reload_pid)
            self.reload_pending = False
        return changed


def _service_users(path: Path, names: tuple[str, ...]) -> list[BrokerUser]:
    """The named users' hashes, from `user:hash` lines; every name must have one."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    hashes: dict[str, list[str]] = {}
    for line in lines:
        name, colon, password_hash = line.strip().partition(":")
        if colon and not name.startswith("#"):
            hashes.setdefault(name, []).append(password_hash)
    users = []
    for name in names:
        if len(hashes.get(name, ())) != 1:
            found = "no hash" if name not in hashes else "more than one hash"
            raise click.ClickException(f"{found} for service user {name!r} in {path}")
        try:
            users.append(BrokerUser(name, hashes[name][0]))
        except ValueError as exc:  # names the user, never the hash
            raise click.ClickException(f"{exc} in {path}") from None
    return users


def _hubs(sessions: sessionmaker[Session]) -> dict[str, str]:
    from doorstep.homes.service import broker_credentials

    try:
        with sessions() as session:
            db.read_only(session)
            return broker_credentials(session)
    except OperationalError as exc:
        raise click.ClickException(cannot_open(exc)) from None


def _replace(path: Path, text: str) -> bool:
    """Replace `path` by a 0600 file holding `text` (temporary file, then rename: the
    broker never reads half a file), unless it holds `text` already. True if written."""
    try:
        if path.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass  # not there, or not ours to read: replaced below
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc}") from None
    finally:
        Path(temporary).unlink(missing_ok=True)  # gone after the rename
    return True


def _reload(target: str | None) -> None:
    """SIGHUP the broker at `target` (a pid or a pid file), or ask the operator to."""
    if target is None:
        click.echo("reload the broker (SIGHUP) so that it reads them")
        return
    pid = _pid(target)
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise click.ClickException(f"cannot signal mosquitto (pid {pid}): {exc}") from None
    click.echo(f"sent SIGHUP to mosquitto (pid {pid})")


def _pid(target: str) -> int:
    """The broker's pid; refused unless /proc shows a mosquitto (a stale pid file may
    name another process now, which SIGHUP could end)."""
    text = target
    if not target.isdigit():
        try:
            text = Path(target).read_text().strip()
        except OSError as exc:
            raise click.ClickException(f"cannot read the pid file {target}: {exc}") from None
    if not text.isdigit():
        raise click.ClickException(f"not a pid: {text!r}")
    pid = int(text)
    if not _is_mosquitto(pid):
        raise click.ClickException(f"pid {pid} is not a running mosquitto")
    return pid


def _is_mosquitto(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "mosquitto"
    except OSError:
        return False
