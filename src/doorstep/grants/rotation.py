"""The issuer keys of a running `serve`, kept up with `doorstep keys` without a restart.

`publish` runs when `serve` starts: when the keys to publish differ from those published
last (`access.keys.needs_bump`), it raises every enrolled hub's shadow version, so that
each gets (when online: `HubLink.on_stale_shadow`) and reports a document with the new
set; then it writes down what is published from now on.

`KeyWatch` looks at `<data dir>/keys/` every `WATCH_SECONDS` (`access.keys.fingerprint`)
and, once a command has changed it, loads the keys again and makes them the service's in
every place that signs: requests (`Runtime.keys`), hubs' desired documents
(`ShadowPublisher`) and the writer process's entry decisions (`HotWriter`). Then, as at
start, it raises the hubs' versions if the published set changed, writes down what is
published (`keys use` and `keys retire` read it), and sends each hub its new document.

The keys are swapped before the versions are raised, so that no document of a raised
version names the keys published before (`ShadowPublisher.publish` builds with the keys
current when it read the version): a hub is counted as trusting a new key only once it
has applied a document that names it. Enrollment relies on the same order: it reads the
keys it hands a hub only once the claim is committed (`homes.router.claim_hub`), so a hub
enrolling as the keys change is either among those whose versions are raised (and is
sent a document with the new keys) or was handed the new keys (and is counted as
trusting them, as a hub enrolled later is).

Keys that cannot be loaded (a file that is no key, or not the key its name says, a
signing key without its file) change nothing: the service signs on with the keys it has,
says why once, and loads them again at the next change. A step that fails on the way
(the database busy) is tried again at the next look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from doorstep.access import keys as issuer_keys
from doorstep.deps import Runtime
from doorstep.grants.shadow import bump_enrolled

log = logging.getLogger(__name__)

WATCH_SECONDS = 1.0


def publish(runtime: Runtime, directory: Path) -> dict[str, int]:
    """Tell the hubs if the published keys changed (see the module docstring), and write
    down what is published from now on; the raised versions, by hub id."""
    bumped: dict[str, int] = {}
    if issuer_keys.needs_bump(directory, runtime.keys):
        with runtime.sessions() as session:
            bumped = bump_enrolled(session, runtime.clock.now())
            session.commit()
        log.info("issuer keys %s published: %d hubs to tell", ", ".join(runtime.keys.public),
                 len(bumped))  # fmt: skip
    issuer_keys.record_published(directory, runtime.keys, bumped)
    return bumped


class KeyWatch:
    """Takes up the keys `doorstep keys` changed, while the service runs."""

    def __init__(self, runtime: Runtime, directory: Path) -> None:
        self._runtime = runtime
        self._directory = directory
        self._seen: object = None  # the first look loads the keys again: nothing is missed
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            try:
                await self.look()
            except Exception:  # the watch's edge: the next look tries again
                log.exception("issuer keys: taking up the changed keys failed; trying again")

    async def look(self) -> None:
        """Take up the keys if they changed since the last look."""
        seen = await asyncio.to_thread(issuer_keys.fingerprint, self._directory)
        if seen == self._seen:
            return
        runtime = self._runtime
        try:
            keys = await asyncio.to_thread(issuer_keys.load, self._directory)
        except issuer_keys.IssuerKeyError as exc:
            self._seen = seen  # said once; loaded again at the next change
            log.error(
                "issuer keys: the changed keys were not taken up, still signing with %s: %s",
                runtime.keys.signer.kid,
                exc,
            )
            return
        if keys.signer.kid != runtime.keys.signer.kid or keys.public != runtime.keys.public:
            self._use(keys)
            log.info("issuer keys taken up: signing with %s, publishing %s", keys.signer.kid,
                     ", ".join(keys.public))  # fmt: skip
        bumped = await asyncio.to_thread(publish, runtime, self._directory)
        if runtime.shadows is not None:
            for hub_id in bumped:
                runtime.shadows.publish(hub_id)
        self._seen = seen

    def _use(self, keys: issuer_keys.IssuerKeys) -> None:
        runtime = self._runtime
        runtime.keys = keys
        if runtime.shadows is not None:
            runtime.shadows.use_keys(keys.signer, keys.public)
        if runtime.hot is not None:
            runtime.hot.use_signer(keys.signer)
