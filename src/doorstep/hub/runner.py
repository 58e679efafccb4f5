"""Builds and runs one hub from its data directory (what `doorstep hub` does)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep.hub import config as hub_config
from doorstep.hub import lockconfig
from doorstep.hub.agent import HubAgent, RelockPolicy
from doorstep.hub.camera import EntryCamera, RecorderCamera, salvage_spool
from doorstep.hub.credential_store import CredentialStore
from doorstep.hub.credentials import CredentialManager, KeypadDefaults
from doorstep.hub.drivers.simulated import SimulatedLock
from doorstep.hub.journal import Journal
from doorstep.hub.liveview import LiveStreamer
from doorstep.hub.lock import LockDriver
from doorstep.hub.simcontrol import SimControl
from doorstep.hub.uploader import Uploader
from doorstep.protocol.grants import GrantVerifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubOptions:
    data_dir: Path
    service_url: str | None = None
    claim_code: str | None = None
    motor_seconds: float = 0.0
    # Matter's AutoRelockTime: a bolt left back with the door shut relocks by itself.
    auto_relock_seconds: float | None = 30.0
    # Which driver runs each door (`hub.lockconfig`); default DATA_DIR/locks.toml if present.
    locks_file: Path | None = None
    # How hard the hub tries to relock, and when it raises the alarm (`agent.RelockPolicy`).
    relock: RelockPolicy = field(default_factory=RelockPolicy)
    # Matter WrongCodeEntryLimit / UserCodeTemporaryDisableTime, set on every keypad lock.
    keypad: KeypadDefaults = field(default_factory=KeypadDefaults)


def build(options: HubOptions) -> tuple[HubAgent, hub_config.HubConfig, SimControl]:
    config = hub_config.load(options.data_dir)
    if config is None:
        if not (options.service_url and options.claim_code):
            raise hub_config.EnrollmentError(
                f"{options.data_dir} holds no enrollment: pass --service and --claim-code"
            )
        config = hub_config.enroll(
            options.data_dir, service_url=options.service_url, claim_code=options.claim_code
        )
        log.info("enrolled as %s", config.hub_id)
    specs = _lock_specs(options, config.access_points)
    issuer_keys = hub_config.trusted_issuer_keys(options.data_dir, config)
    key = hub_config.signing_key(options.data_dir)
    journal = Journal(options.data_dir / "journal.db", hub_id=config.hub_id, signing_key=key)
    simulated = {
        point: SimulatedLock(
            motor_seconds=options.motor_seconds, auto_relock_seconds=options.auto_relock_seconds
        )
        for point in config.access_points
        if specs.get(point, {}).get("driver", "simulated") == "simulated"
    }
    locks: dict[str, LockDriver] = dict(simulated)
    try:
        for point, spec in specs.items():
            if point not in simulated:
                locks[point] = lockconfig.build(point, spec, journal=journal)
                log.info("access point %s: %s lock", point, spec["driver"])
    except lockconfig.LockConfigError:
        for driver in locks.values():
            driver.close()
        journal.close()
        raise
    cameras: dict[str, EntryCamera] = _cameras(options, config, specs, key)
    verifier = GrantVerifier(hub_id=config.hub_id, issuer_keys=issuer_keys, clock=time.time)

    def trust(keys: dict[str, bytes]) -> None:  # saved first: a restart trusts the same
        hub_config.save_issuer_keys(options.data_dir, config.hub_id, keys)
        verifier.set_issuer_keys(keys)

    credentials = CredentialManager(
        hub_id=config.hub_id,
        store=CredentialStore(options.data_dir / "credentials.db"),
        locks=locks,
        seal_key=hub_config.seal_key(options.data_dir),
        issuer_keys=issuer_keys,
        journal=journal,
        clock=time.time,
        keypad=options.keypad,
        trust_issuer_keys=trust,
    )
    agent = HubAgent(
        hub_id=config.hub_id,
        journal=journal,
        locks=locks,
        verifier=verifier,
        clock=time.time,
        relock=options.relock,
        cameras=cameras,
        credentials=credentials,
    )
    control = SimControl(options.data_dir / "sim.sock", simulated)
    return agent, config, control


def _cameras(
    options: HubOptions,
    config: hub_config.HubConfig,
    specs: dict[str, dict[str, Any]],
    key: Ed25519PrivateKey,
) -> dict[str, EntryCamera]:
    """A recorder per door with a camera; their clips go to one uploader, their live
    view through one streamer. The spool of a door whose camera was taken away is
    salvaged first: its entries' video goes to the uploader (`camera.salvage_spool`)."""
    points = [point for point, spec in specs.items() if spec.get("camera")]
    video = options.data_dir / "video"
    spools = video.iterdir() if video.is_dir() else iter(())
    orphans = sorted(spool for spool in spools if spool.is_dir() and spool.name not in points)
    queue = options.data_dir / "uploads" / "queue.db"
    if not points and not orphans and not queue.exists():
        return {}
    uploader = Uploader(
        options.data_dir, hub_id=config.hub_id, key=key, service_url=options.service_url
    )
    for spool in orphans:
        salvage_spool(spool, access_point=spool.name, uploader=uploader)
    if not points:  # nothing else will keep the uploader going
        uploader.drain()
        return {}
    cameras: dict[str, RecorderCamera] = {}
    live = LiveStreamer(
        cameras, hub_id=config.hub_id, key=key, service_url=lambda: uploader.service_url
    )
    for point in points:
        cameras[point] = RecorderCamera(
            specs[point]["camera"],
            options.data_dir / "video" / point,
            access_point=point,
            uploader=uploader,
            live=live,
        )
    live.cameras.update(cameras)
    return dict(cameras)


def _lock_specs(options: HubOptions, access_points: Sequence[str]) -> dict[str, dict[str, Any]]:
    path = options.locks_file or options.data_dir / lockconfig.FILE_NAME
    if options.locks_file is None and not path.exists():
        return {}
    return lockconfig.load(path, access_points)


def run(options: HubOptions) -> None:
    agent, config, control = build(options)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    control.start()
    agent.start(config.broker)
    log.info(
        "hub %s running (epoch %d), access points: %s",
        config.hub_id,
        agent.journal.epoch,
        ", ".join(config.access_points),
    )
    done.wait()
    control.stop()
    agent.stop()
