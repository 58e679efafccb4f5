"""`doorstep`: serve, hub, demo, audit, users, keys."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from doorstep import __version__
from doorstep.cli.admin import audit, users
from doorstep.cli.broker import broker
from doorstep.cli.clips import clips
from doorstep.cli.config import load_settings
from doorstep.cli.demo import demo
from doorstep.cli.keys import keys
from doorstep.hub.agent import RelockPolicy
from doorstep.hub.credentials import KeypadDefaults

CLAIM_CODE_VARIABLE = "DOORSTEP_HUB_CLAIM_CODE"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__)
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
def cli(verbose: bool) -> None:
    """Doorstep: in-home delivery and access you can trust with your front door.

    Settings come from DOORSTEP_* environment variables (nested with __, e.g.
    DOORSTEP_ENTRY__GRANT_TTL_SECONDS) and an optional TOML file named by
    DOORSTEP_CONFIG.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


@cli.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="Database, keys, broker files.")
@click.option("--host", help="HTTP listen address (default 127.0.0.1).")
@click.option("--port", type=int, help="HTTP port (default 8000).")
@click.option(
    "--broker-url",
    help="mqtt://user:password@host:port of an existing broker, or mqtts:// (TLS, port 8883"
    " by default; ?ca_file=PATH to trust only that CA).",
)
@click.option("--database-url", help="sqlite:///path or postgresql://... (default: SQLite file).")
def serve(
    data_dir: Path | None,
    host: str | None,
    port: int | None,
    broker_url: str | None,
    database_url: str | None,
) -> None:
    """Run the access service: HTTP API, hub link and background jobs.

    With no broker URL it writes a Mosquitto configuration (a loopback listener, and a
    TLS listener for hubs when DOORSTEP_BROKER_TLS_CERT_FILE and _KEY_FILE are set; no
    anonymous access, one password and ACL per hub) and runs Mosquitto as a supervised
    child, stopping it on exit. The database schema is migrated on start. Entry decisions and
    what hubs send are written by a second process of its own, so the service can use
    two cores (DOORSTEP_WRITER_PROCESS=false keeps it to one).
    """
    from doorstep.access.keys import IssuerKeyError
    from doorstep.db import RoleSetupError
    from doorstep.keycheck import KeysNotShared
    from doorstep.server import BrokerUnusable, DatabaseUnavailable
    from doorstep.server import serve as run
    from doorstep.video.errors import ClipStoreUnavailable

    settings = load_settings(
        data_dir=data_dir,
        http_host=host,
        http_port=port,
        broker_url=broker_url,
        database_url=database_url,
    )
    try:
        run(settings)
    except (
        ClipStoreUnavailable,
        RoleSetupError,
        DatabaseUnavailable,
        BrokerUnusable,
        KeysNotShared,
    ) as exc:
        raise click.ClickException(str(exc)) from None
    except IssuerKeyError as exc:  # a file in keys/ that is no key, or not the one it names
        raise click.ClickException(f"the issuer keys cannot be used: {exc}") from None


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Where the hub keeps its enrollment, key and journal.",
)
@click.option("--service", "service_url", help="Service URL, to redeem a claim code.")
@click.option(
    "--claim-code",
    envvar=CLAIM_CODE_VARIABLE,
    show_envvar=True,
    help="The one-time code the resident got when adding the hub; - reads it from standard "
    "input. On the command line any user on the machine sees it in the process list: "
    "prefer -, the environment variable or --claim-code-file.",
)
@click.option(
    "--claim-code-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A file holding the claim code (instead of --claim-code).",
)
@click.option(
    "--motor-seconds",
    type=float,
    default=0.0,
    show_default=True,
    help="Simulated lock: how long the bolt takes to move.",
)
@click.option(
    "--auto-relock-seconds",
    type=float,
    default=30.0,
    show_default=True,
    help="Simulated lock: relock by itself this long after an unlock if the door "
    "stays shut (Matter AutoRelockTime); 0 turns it off.",
)
@click.option(
    "--relock-deadline-seconds",
    type=float,
    default=RelockPolicy.deadline_seconds,
    show_default=True,
    help="Door shut but not verified locked this long after: alarm (relock_failed).",
)
@click.option(
    "--door-open-alert-seconds",
    type=float,
    default=RelockPolicy.door_open_seconds,
    show_default=True,
    help="Door open this long during an entry: alarm (door_held_open).",
)
@click.option(
    "--wrong-code-limit",
    type=click.IntRange(1, 255),
    default=KeypadDefaults.wrong_code_entry_limit,
    show_default=True,
    help="Keypad locks: wrong codes in a row before the keypad locks out "
    "(Matter WrongCodeEntryLimit).",
)
@click.option(
    "--keypad-lockout-seconds",
    type=click.IntRange(1, 255),
    default=KeypadDefaults.user_code_temporary_disable_seconds,
    show_default=True,
    help="Keypad locks: how long the lockout lasts (Matter UserCodeTemporaryDisableTime).",
)
@click.option(
    "--locks",
    "locks_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Which driver runs each door (TOML); default DATA_DIR/locks.toml when present.",
)
def hub(
    data_dir: Path,
    service_url: str | None,
    claim_code: str | None,
    claim_code_file: Path | None,
    motor_seconds: float,
    auto_relock_seconds: float,
    relock_deadline_seconds: float,
    door_open_alert_seconds: float,
    wrong_code_limit: int,
    keypad_lockout_seconds: int,
    locks_file: Path | None,
) -> None:
    """Run a home hub: it drives the home's locks and reports every step.

    On first start it redeems the claim code (once) and keeps its broker credentials and
    the pinned issuer keys in DATA_DIR. It verifies every grant offline, journals every
    event before sending it, and resends until the service acknowledges.

    \b
    Locks: each door runs the simulated lock unless DATA_DIR/locks.toml (or --locks)
    names a driver for it:
      [access_points.front]
      driver = "zigbee2mqtt"     # your Zigbee2MQTT broker and devices
      host = "192.168.1.10"      # port, username, password, base_topic optional
      lock = "front_door"        # the lock's friendly_name
      contact_sensor = "front_contact"   # a door sensor, if the lock has none
    \b
      [access_points.back]
      driver = "matter"          # a python-matter-server WebSocket
      url = "ws://192.168.1.10:5580/ws"
      node_id = 7                # endpoint, pin (for locks requiring one) optional
    \b
    These drivers are verified against protocol peers (a Zigbee2MQTT stand-in on a real
    Mosquitto, a Matter server stand-in replaying a real door-lock node), not radios.
    A simulated home's door is moved through DATA_DIR/sim.sock (`doorstep.hub.simcontrol`).
    """
    from doorstep.hub import config as hub_config
    from doorstep.hub.lockconfig import LockConfigError
    from doorstep.hub.runner import HubOptions, run

    try:
        enrolled = hub_config.load(data_dir) is not None
        run(
            HubOptions(
                data_dir=data_dir,
                service_url=service_url,
                claim_code=_claim_code(claim_code, claim_code_file, needed=not enrolled),
                motor_seconds=motor_seconds,
                auto_relock_seconds=auto_relock_seconds or None,
                locks_file=locks_file,
                relock=RelockPolicy(
                    deadline_seconds=relock_deadline_seconds,
                    door_open_seconds=door_open_alert_seconds,
                ),
                keypad=KeypadDefaults(
                    wrong_code_entry_limit=wrong_code_limit,
                    user_code_temporary_disable_seconds=keypad_lockout_seconds,
                ),
            )
        )
    except (hub_config.EnrollmentError, LockConfigError) as exc:
        raise click.ClickException(str(exc)) from exc


def _claim_code(given: str | None, path: Path | None, *, needed: bool) -> str | None:
    """The claim code: as given (by --claim-code or its environment variable), or read
    from standard input (`-`) or from --claim-code-file, without surrounding whitespace.
    Neither is read once the hub is enrolled (not `needed`): the code is spent, and a
    hub restarted with the same options must still start."""
    if given is not None and path is not None:
        raise click.UsageError(
            f"pass --claim-code (or {CLAIM_CODE_VARIABLE}) or --claim-code-file, not both"
        )
    if not needed:
        return None
    if path is not None:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise click.UsageError(f"cannot read the claim code from {path}: {exc}") from exc
    elif given == "-":
        text = sys.stdin.readline()
    else:
        return given
    if not text.strip():
        raise click.UsageError("the claim code is empty")
    return text.strip()


cli.add_command(demo)
cli.add_command(audit)
cli.add_command(clips)
cli.add_command(users)
cli.add_command(keys)
cli.add_command(broker)


def main() -> None:
    cli()
