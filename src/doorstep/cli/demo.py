"""`doorstep demo`: the whole story on one terminal, on real processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from doorstep import demo as scenes


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("var/demo"),
    show_default=True,
    help="Where the demo keeps its database and logs (wiped first).",
)
@click.option(
    "--homes",
    type=click.IntRange(1, 10),
    default=2,
    show_default=True,
    help="How many simulated homes (each with its own hub process).",
)
def demo(data_dir: Path, homes: int) -> None:
    """Run the service, its broker and simulated homes; deliver a parcel into each home.

    A carrier books a delivery over the HTTP API; the courier scans the parcel at the door;
    the service checks and signs a grant; the hub verifies it offline and unlocks; the
    simulated courier opens the door, puts the parcel in and closes it; the hub relocks;
    the service marks the entry done. One denied attempt (a parcel for another address)
    shows a refusal. Then a dog walker without the app comes in once with a keypad code
    the resident gave, and the code is revoked. Exits 0 when every delivery and visit
    ended with a verified relock.
    """
    started = time.monotonic()

    def say(message: str) -> None:
        click.echo(f"[{time.monotonic() - started:6.2f}s] {message}")

    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    with scenes.running(data_dir.resolve(), homes=homes, say=say) as world:
        for home in world.homes:
            _deliver(world, home, say)
        _guest_visit(world.homes[0], say)
        _show_audit(world, say)
    _verify_audit(data_dir, say)
    click.echo("")
    click.echo(f"database: {(data_dir / 'doorstep.db').resolve()}")
    click.echo(f"logs:     {(data_dir / 'logs').resolve()}/")
    click.echo("demo finished: every parcel delivered, the guest came and went, every door "
               "relocked and verified")  # fmt: skip


def _deliver(world: scenes.World, home: scenes.Home, say: scenes.Say) -> None:
    _courier_id, courier = world.couriers[0]
    barcode = f"PCL-{home.hub_id[-6:].upper()}-1"
    delivery = scenes.book(world, home, [barcode])
    say(
        f"carrier booked delivery {delivery['id']} to {home.id}: parcel {barcode}, "
        f"window until {delivery['window_end'][11:16]} UTC"
    )
    wrong = scenes.request_entry(
        courier, delivery["id"], "PCL-NOT-THIS-HOUSE", home.latitude, home.longitude
    )
    say(
        f"courier scanned a parcel for another address: {wrong['state']} ({wrong['reason']}): "
        f'"{wrong["advice"]}"'
    )
    body = {
        "delivery_id": delivery["id"],
        "barcode": barcode,
        "latitude": home.latitude,
        "longitude": home.longitude,
        "accuracy_m": 8.0,
        "nobody_answered": True,
        "device_key_id": courier.phone.key_id if courier.phone else None,
    }
    say("courier knocked, nobody answered; courier scans the parcel at the door")
    challenged = scenes.ask_to_enter(courier, body)
    if not challenged.get("to_sign"):
        raise click.ClickException(f"the door sent no challenge: {challenged}")
    say(
        f"grant signed for entry {challenged['id']}, naming the courier's phone key; "
        "the hub verified it offline and sent a challenge"
    )
    entry = scenes.prove_and_unlock(courier, challenged)
    if entry["state"] != "unlocked":
        raise click.ClickException(f"entry was not unlocked: {entry}")
    say("the phone signed the challenge; the hub checked the signature and retracted the bolt")
    home.door("open_door")
    scenes.wait_entry(courier, entry["id"], "opened")
    say("courier opened the door and put the parcel inside")
    home.door("close_door")
    say("courier closed the door; the hub relocks on close")
    done = scenes.wait_entry(courier, entry["id"], "done")
    if done["state"] != "done":
        raise click.ClickException(f"entry did not finish: {done}")
    status = home.door("status")["status"]
    say(
        f"verified relock: bolt {status['lock_state']}, door {status['door_state']}; "
        f"entry {entry['id']} done at {done['done_at'][11:19]} UTC"
    )


def _guest_visit(home: scenes.Home, say: scenes.Say) -> None:
    """A dog walker without the app: the resident gives a one-visit keypad code, the hub
    programs it on the lock, the walker types it, comes in and out; the door relocks; the
    code is then spent, and revoked for good measure."""
    resident = home.resident
    zone = ZoneInfo("Europe/London")  # the demo homes' zone
    now = datetime.now(zone).replace(tzinfo=None, microsecond=0)
    body = {
        "access_point": "front", "label": "Dog walker", "kind": "once", "method": "keypad",
        "starts_at": (now - timedelta(minutes=5)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
    }  # fmt: skip
    created = resident.call("POST", f"/v1/homes/{home.id}/grants", 201, json=body)
    grant = created["grant"]
    say(
        f"resident gave the dog walker a one-visit keypad code (grant {grant['id']}), shown "
        "to the resident once; the service keeps only its hash and a copy sealed to the hub"
    )
    _until(lambda: resident.call("GET", f"/v1/grants/{grant['id']}")["enforced_at_hub"],
           "the hub did not program the code")  # fmt: skip
    say("the hub verified the signed shadow document and programmed the code on the lock")
    verdict = home.type_code(created["pin"])
    if not verdict["granted"]:
        raise click.ClickException(f"the lock refused the code: {verdict}")
    entry_id = _until(lambda: _keypad_entry(resident, home.id), "no keypad entry was recorded")
    say(f"the dog walker typed the code; the lock opened; entry {entry_id} (method keypad)")
    home.door("open_door")
    home.door("close_door")
    done = scenes.wait_entry(resident, entry_id, "done")
    if done["state"] != "done":
        raise click.ClickException(f"the visit did not finish: {done}")
    say("the walker left and closed the door; the hub relocked and verified it")
    resident.call("DELETE", f"/v1/grants/{grant['id']}")
    _until(lambda: resident.call("GET", f"/v1/grants/{grant['id']}")["enforced_at_hub"],
           "the hub did not apply the revocation")  # fmt: skip
    refused = home.type_code(created["pin"])
    say(f"resident revoked the code; the hub cleared it; typed again: {refused['error']}")


def _keypad_entry(resident: scenes.Api, home_id: str) -> str | None:
    for record in resident.call("GET", f"/v1/homes/{home_id}/audit"):
        if record["action"] == "entry:unlocked" and record["data"].get("method") == "keypad":
            return str(record["subject"])
    return None


def _until(read: Callable[[], Any], failure: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := read()):
        if time.monotonic() > deadline:
            raise click.ClickException(failure)
        time.sleep(0.1)
    return value


def _show_audit(world: scenes.World, say: scenes.Say) -> None:
    home = world.homes[0]
    records = home.resident.call("GET", f"/v1/homes/{home.id}/audit")
    say(f"audit log of {home.id} as its resident sees it ({len(records)} records):")
    for record in records:
        stamp = datetime.fromisoformat(record["ts"]).astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
        click.echo(
            f"           #{record['seq']:<4} {stamp}  {record['action']:<24} {record['actor']}"
        )


def _verify_audit(data_dir: Path, say: scenes.Say) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "doorstep", "audit", "verify", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    say(f"doorstep audit verify: {(result.stdout or result.stderr).strip()}")
    if result.returncode != 0:
        raise click.ClickException("audit chain did not verify")
