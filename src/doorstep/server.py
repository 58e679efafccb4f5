"""What `doorstep serve` runs: the broker (supervised, unless one is configured), the app,
and uvicorn, stopped in reverse order."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import uvicorn
from sqlalchemy.exc import OperationalError

from doorstep import db, heap, keycheck
from doorstep.app import create_app
from doorstep.broker import Mosquitto, TlsListener
from doorstep.broker.supervisor import free_port
from doorstep.cli.config import cannot_open
from doorstep.clips.storage import object_store
from doorstep.homes.service import PublicBroker, broker_credentials
from doorstep.protocol.mqtt import BrokerAddress, read_ca_file
from doorstep.settings import Settings, is_loopback

log = logging.getLogger(__name__)


def serve(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    warn_of_links_in_clear(settings)
    check_clip_store(settings)
    migrate(settings)
    # uvicorn re-raises SIGTERM after its graceful shutdown; turning it into SystemExit
    # lets the broker and the database be closed on the way out.
    signal.signal(signal.SIGTERM, _exit)
    with ExitStack() as stack:
        broker, on_enrolled = _broker(settings, stack)
        app = create_app(
            settings,
            broker=broker,
            broker_public=public_broker(settings, broker),
            on_hub_enrolled=on_enrolled,
        )
        log.info("database: %s", _redact(settings.resolved_database_url))
        log.info("web: %s", settings.resolved_public_url)
        heap.freeze_startup()
        uvicorn.run(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_level="warning",
            access_log=False,
            # X-Forwarded-For and -Proto count from these peers only (uvicorn's own default
            # would also read FORWARDED_ALLOW_IPS); none: from nobody.
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=settings.trusted_proxies or None,
            # Event streams (the pages' live updates, `/v1/homes/{id}/events`) never end by
            # themselves; on shutdown they are cut after this long, and browsers reconnect.
            timeout_graceful_shutdown=5,
        )


def warn_of_links_in_clear(settings: Settings) -> None:
    """Reachable from other machines over plain http (allowed outside production, e.g. on
    a home network): say that links and sign-in cookies then travel unencrypted."""
    if is_loopback(settings.http_host) or not settings.resolved_public_url.startswith("http:"):
        return
    log.warning(
        "web: DOORSTEP_PUBLIC_URL is http://, so password-reset and invitation links and "
        "the sign-in cookie cross the network in clear; put the service behind HTTPS and "
        "set an https:// DOORSTEP_PUBLIC_URL (production requires it)"
    )


def check_clip_store(settings: Settings) -> None:
    """With clips in an S3 bucket, find out now, not at the first upload, that the bucket
    is missing or the keys are wrong (`ClipStoreUnavailable`, which says which)."""
    if settings.clips.store != "s3":
        return
    from doorstep.video.s3 import S3ClipStore  # boto3 is imported only when used

    store = object_store(settings.data_dir / "clips" / "objects", settings.clips)
    assert isinstance(store, S3ClipStore)
    log.info("clips: checking the bucket %r", store.bucket)
    store.check()


def migrate(settings: Settings) -> None:
    """Bring the schema up to date before anything starts (`db.migrate`: with
    `database_owner_url`, as the owner, granting the service's role its share); a role
    setup that cannot work stops here (`db.RoleSetupError`), and so does a database that
    cannot be opened (`DatabaseUnavailable`). Then its keys are checked against those
    the database's other `serve` processes use (`keycheck.KeysNotShared`)."""
    engine = db.make_engine(
        settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    try:
        db.migrate(engine, settings.database_owner_url)
        keycheck.check(engine, settings.data_dir / "keys")
    except OperationalError as exc:
        raise DatabaseUnavailable(cannot_open(exc)) from exc
    finally:
        engine.dispose()


class DatabaseUnavailable(Exception):
    """The database could not be opened at start (down, wrong address or password)."""


class BrokerUnusable(Exception):
    """The broker settings cannot be used (a malformed URL, an unreadable CA file)."""


def _exit(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def public_broker(settings: Settings, broker: BrokerAddress) -> PublicBroker:
    """What hubs are told at enrollment: the supervised broker's TLS listener if it has
    one, else the broker the service uses; at `broker_public_host` if set."""
    host = settings.broker_public_host or broker.host
    if settings.broker_tls_cert_file is None:
        return PublicBroker(host, broker.port, broker.tls, broker.ca_pem)
    ca_file = settings.broker_tls_ca_file
    try:
        ca_pem = read_ca_file(ca_file) if ca_file is not None else None
    except ValueError as exc:
        raise BrokerUnusable(str(exc)) from None
    return PublicBroker(host, settings.broker_tls_port, tls=True, ca_pem=ca_pem)


def _broker(settings: Settings, stack: ExitStack) -> tuple[BrokerAddress, Callable[[], None]]:
    if settings.broker_url:
        url = settings.broker_url.get_secret_value()
        log.info("broker: %s (managed elsewhere)", _redact(url))
        try:
            return BrokerAddress.from_url(url), lambda: None
        except ValueError as exc:  # its text never holds the URL's password
            raise BrokerUnusable(str(exc)) from None
    engine = db.make_engine(
        settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    sessions = db.make_session_factory(engine)

    def credentials() -> dict[str, str]:
        with sessions() as session:
            return broker_credentials(session)

    directory = settings.data_dir / "broker"
    mosquitto = Mosquitto(directory, port=_stable_port(settings, directory), tls=_tls(settings))
    mosquitto.start(credentials())
    stack.callback(mosquitto.stop)
    stopping = threading.Event()
    watch = threading.Thread(
        target=_watch, args=(mosquitto, credentials, stopping), name="broker-watch", daemon=True
    )
    watch.start()
    # Run last in, first out: no revival once stopping has begun.
    stack.callback(watch.join, 10)
    stack.callback(stopping.set)
    log.info(
        "broker: mosquitto pid %s on %s:%s (supervised)",
        mosquitto.pid,
        mosquitto.host,
        mosquitto.port,
    )
    if mosquitto.tls is not None:
        where = mosquitto.tls.host or "every interface"
        log.info("broker: TLS listener for hubs on %s, port %s", where, mosquitto.tls.port)
    address = BrokerAddress(
        mosquitto.host, mosquitto.port, mosquitto.service_user, mosquitto.service_password
    )
    return address, lambda: mosquitto.update_hubs(credentials)


def _tls(settings: Settings) -> TlsListener | None:
    cert_file, key_file = settings.broker_tls_cert_file, settings.broker_tls_key_file
    if cert_file is None or key_file is None:
        return None
    return TlsListener(settings.broker_tls_host, settings.broker_tls_port, cert_file, key_file)


BROKER_WATCH_SECONDS = 1.0


def _watch(
    mosquitto: Mosquitto, credentials: Callable[[], dict[str, str]], stopping: threading.Event
) -> None:
    """Start the supervised broker again whenever it dies (crashed, killed, out of
    memory): hubs and the service reconnect by themselves, and what they publish in the
    meantime waits in their clients and the hubs' journals. A failed start is tried again
    at the next look. A revived broker is started on this thread, which lives as long as
    `serve` does: the broker is set to die with the thread that started it."""
    while not stopping.wait(BROKER_WATCH_SECONDS):
        try:
            status = mosquitto.revive(credentials)
        except Exception:  # the process edge: log it and look again in a second
            log.exception("broker: mosquitto died and could not be started again")
            continue
        if status is not None:
            log.error(
                "broker: mosquitto exited (status %s); started again, pid %s",
                status,
                mosquitto.pid,
            )


def _redact(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _credentials = head.partition("://")
    return f"{scheme}://***@{tail}"


def _stable_port(settings: Settings, directory: Path) -> int | None:
    """Hubs keep the broker's port from enrollment, so a restart must reuse it."""
    if settings.managed_broker_port:
        return settings.managed_broker_port
    remembered = directory / "port"
    if remembered.exists():
        return int(remembered.read_text())
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    remembered.write_text(str(port))
    return port
