"""Send what the outbox holds: signed webhooks over HTTP, email over SMTP.

One thread per service process. Each round it claims the due messages in a writer job
(moving their next attempt a lease into the future, so a crash mid-send retries them
later rather than never), sends them, and records each outcome in another writer job:
sent; or retried after an exponential backoff with jitter; or, after `max_attempts`,
failed, with an audit record. A receiver may therefore see an event twice (a crash
after sending but before recording); the stable event id lets it notice. Messages for a
channel switched off here (no SMTP server) are not sent; the round sets them all aside
as `skipped` in one job.

Webhook targets must be public addresses: a carrier cannot point the service at its own
loopback or private network (`allow_private_targets` lifts this, for tests and
development); the address checked is the one connected to (`targets`). Redirects are not
followed. A request takes at most `webhook_timeout_seconds` as a whole, and an endpoint
that fails to answer is not tried again in the same round (its other messages wait for
their next attempt), so one carrier's dead endpoint delays the others by one timeout a
round at most.

Once a message is final (sent, failed for good, or set aside as `skipped`: it is never
sent later, even once the channel is configured), its row keeps only what the operator's
views need (type, recipient, state, times, the email's subject and ids): an email's text
may hold a live single-use link (an invitation, a password reset), which anyone reading
the database or a backup of it could otherwise use.
Mail goes over STARTTLS, or SMTPS (`NotifySettings.implicit_tls`: port 465 unless told
otherwise), with the server's certificate verified (`NotifySettings.starttls`: on unless
the server is loopback; plain text to another machine must be asked for).
Header values a user may have written (a home's name, a guest's label in a subject) are
folded onto one line, so they cannot add headers or recipients.
Carriers' signing secrets are stored sealed (`sealing`): the dispatcher opens each as it
signs, and on starting seals those an earlier version stored in plain.
"""

from __future__ import annotations

import functools
import logging
import random
import smtplib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import orjson

from doorstep.audit.service import append_tx
from doorstep.clock import Clock
from doorstep.notify import sealing, signing, targets
from doorstep.notify.models import Channel
from doorstep.settings import NotifySettings
from doorstep.sql import Submits, Tx

log = logging.getLogger(__name__)

LEASE_SECONDS = 120
CLAIM_LIMIT = 50

_CLAIM = (
    "SELECT m.id, m.event_id, m.event_type, m.channel, m.target, m.payload, m.attempts,"
    " m.next_attempt_at, w.url, w.secret, w.active FROM outbox m"
    " LEFT JOIN webhook_endpoints w ON m.channel = 'webhook' AND w.id = m.target"
    " WHERE m.state = 'pending' AND m.next_attempt_at <= ?"
    " ORDER BY m.next_attempt_at LIMIT ?"
)


class DeliveryError(Exception):
    """This attempt failed; the message may be retried."""


class PermanentError(DeliveryError):
    """Retrying cannot help (the endpoint is gone, the address is refused)."""


class NotConfigured(PermanentError):
    """The channel is switched off here (no SMTP server): the message is set aside as
    `skipped`, which is a setting, not a delivery failure, so it is not audited."""


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    event_id: str
    event_type: str
    channel: str
    target: str
    payload: dict[str, Any]
    attempt: int
    url: str | None
    secret: str | None  # as stored: sealed (`sealing`), or in plain by an earlier version
    endpoint_active: bool


class Dispatcher:
    """`key` opens the sealed webhook secrets (`sealing`); without it only secrets stored
    in plain can be used, and none is sealed."""

    def __init__(
        self,
        *,
        writer: Submits,
        clock: Clock,
        settings: NotifySettings,
        key: bytes | None = None,
    ) -> None:
        self._writer = writer
        self._clock = clock
        self._settings = settings
        self._key = key
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="notify", daemon=True)
        self._http = targets.WebhookClient(
            timeout=settings.webhook_timeout_seconds,
            allow_private=settings.allow_private_targets,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self._http.close()

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll."""
        self._wake.set()

    def _loop(self) -> None:
        try:
            self.seal_plain_secrets()
        except Exception:  # the process edge: they are read in plain meanwhile
            log.exception("sealing the webhook secrets stored in plain failed")
        while not self._stopping.is_set():
            try:
                sent = self.run_once()
            except Exception:  # the process edge: keep dispatching whatever failed
                log.exception("notification round failed")
                sent = 0
            if sent < CLAIM_LIMIT:
                self._wake.wait(self._settings.poll_seconds)
                self._wake.clear()

    def seal_plain_secrets(self) -> int:
        """Seal the webhook secrets an earlier version stored in plain; returns how many."""
        if self._key is None:
            return 0
        plain = self._writer.submit(_plain_secrets).result(timeout=60)
        sealed = [(id_, secret, sealing.seal(self._key, id_, secret)) for id_, secret in plain]
        if sealed:
            self._writer.submit(functools.partial(_store_sealed, sealed=sealed)).result(timeout=60)
        return len(sealed)

    def run_once(self) -> int:
        """Claim and send one round of due messages; returns how many were claimed."""
        now = self._clock.now()
        claimed = self._writer.submit(functools.partial(_claim, now=now)).result(timeout=60)
        skipped: list[tuple[Claimed, str]] = []
        unanswered: set[str] = set()  # webhook endpoints that failed to answer this round
        for message in claimed:
            if self._stopping.is_set():
                break
            reason = self._deliver(message, unanswered)
            if reason is not None:
                skipped.append((message, reason))
        if skipped:
            # Set aside together: nothing was sent for them, so there is nothing a crash
            # before this write could make happen twice (they would only be skipped again).
            self._writer.submit(_mark_skipped(skipped)).result(timeout=60)
        return len(claimed)

    def _deliver(self, message: Claimed, unanswered: set[str]) -> str | None:
        """Send `message` and record the outcome; or, when its channel is switched off
        here, say why (the round sets such messages aside together)."""
        try:
            if message.channel == Channel.WEBHOOK:
                self._post(message, unanswered)
            elif message.channel == Channel.EMAIL:
                self._mail(message)
            else:
                raise PermanentError(f"unknown channel {message.channel!r}")
        except NotConfigured as exc:
            return str(exc)
        except DeliveryError as exc:
            self._record(message, error=str(exc), permanent=isinstance(exc, PermanentError))
            return None
        self._record(message, error=None, permanent=False)
        return None

    def _post(self, message: Claimed, unanswered: set[str]) -> None:
        if not message.endpoint_active or message.url is None or message.secret is None:
            raise PermanentError("the carrier's webhook endpoint is disabled or gone")
        if message.target in unanswered:
            raise DeliveryError("not tried: the endpoint failed to answer earlier this round")
        try:
            secret = sealing.unseal(self._key, message.target, message.secret)
        except sealing.SealBroken as exc:
            raise PermanentError(str(exc)) from exc
        body = orjson.dumps(message.payload)
        timestamp = int(self._clock.timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": "doorstep-webhooks/1",
            signing.SIGNATURE_HEADER: signing.sign(secret, body, timestamp),
            signing.EVENT_ID_HEADER: message.event_id,
            signing.EVENT_TYPE_HEADER: message.event_type,
        }
        try:
            status = self._http.post(message.url, body, headers)
        except targets.Refused as exc:
            raise PermanentError(str(exc)) from exc
        except targets.Unreachable as exc:
            unanswered.add(message.target)
            raise DeliveryError(str(exc)) from exc
        if not 200 <= status < 300:
            raise DeliveryError(f"the endpoint answered {status}")

    def _mail(self, message: Claimed) -> None:
        settings = self._settings
        if not settings.smtp_host:
            raise NotConfigured("no SMTP server is configured (notify.smtp_host)")
        mail = EmailMessage()
        try:
            mail["From"] = settings.smtp_sender
            mail["To"] = message.target
            mail["Subject"] = _one_line(str(message.payload.get("subject", "Doorstep")))
            mail["Message-ID"] = f"<{message.event_id}@doorstep>"
        except ValueError as exc:  # a line break left in an address: no such mail can go
            raise PermanentError(f"cannot write the mail's headers: {exc}") from exc
        mail.set_content(str(message.payload.get("text", "")))
        # smtplib's own default context verifies nothing: anyone on the path could read
        # the links in the mail. Check the server's certificate.
        context = ssl.create_default_context()
        host, port, timeout = settings.smtp_host, settings.smtp_port, settings.smtp_timeout_seconds
        try:
            with (
                smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
                if settings.implicit_tls
                else smtplib.SMTP(host, port, timeout=timeout)
            ) as smtp:
                if settings.starttls:
                    smtp.starttls(context=context)
                if settings.smtp_username:
                    password = settings.smtp_password
                    smtp.login(
                        settings.smtp_username, password.get_secret_value() if password else ""
                    )
                smtp.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    def _record(self, message: Claimed, *, error: str | None, permanent: bool) -> None:
        now = self._clock.now()
        if error is None:
            job = _mark_sent(message, now)
        elif permanent or message.attempt >= self._settings.max_attempts:
            log.warning("giving up on %s %s: %s", message.channel, message.event_id, error)
            job = _mark_failed(message, now, error)
        else:
            delay = _backoff(message.attempt, self._settings)
            log.info(
                "%s %s attempt %d failed (%s); retry in %.0f s",
                message.channel,
                message.event_id,
                message.attempt,
                error,
                delay,
            )
            job = _mark_retry(message, now + timedelta(seconds=delay), error)
        self._writer.submit(job).result(timeout=60)


def _claim(tx: Tx, now: datetime) -> list[Claimed]:
    claimed = []
    lease = tx.time(now + timedelta(seconds=LEASE_SECONDS))
    for row in tx.all(_CLAIM, (tx.time(now), CLAIM_LIMIT)):
        id_, event_id, event_type, channel, target, payload, attempts, due = row[:8]
        url, secret, active = row[8:]
        # Claim only if nobody else (another process) moved it since the read.
        if not tx.run(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?"
            " WHERE id = ? AND state = 'pending' AND next_attempt_at = ?",
            (lease, id_, due),
        ):
            continue
        if isinstance(payload, str | bytes):
            payload = orjson.loads(payload)
        claimed.append(
            Claimed(
                id_,
                event_id,
                event_type,
                channel,
                target,
                payload,
                int(attempts) + 1,
                url,
                secret,
                bool(active),
            )
        )
    return claimed


# Writer jobs are partials of module-level functions, so that they can run in the hot
# paths' writer process (`doorstep.hotwriter.Jobs`) as well as on this process's writer.


def _plain_secrets(tx: Tx) -> list[tuple[str, str]]:
    return [
        (str(id_), str(secret))
        for id_, secret in tx.all(
            "SELECT id, secret FROM webhook_endpoints WHERE substr(secret, 1, ?) = ?",
            (len(sealing.PLAIN_PREFIX), sealing.PLAIN_PREFIX),
        )
    ]


def _store_sealed(tx: Tx, *, sealed: list[tuple[str, str, str]]) -> None:
    for id_, plain, stored in sealed:
        # Unless the carrier set a new secret meanwhile.
        tx.run(
            "UPDATE webhook_endpoints SET secret = ? WHERE id = ? AND secret = ?",
            (stored, id_, plain),
        )


def _mark_sent(message: Claimed, now: datetime) -> Callable[[Tx], None]:
    return functools.partial(_sent, message=message, now=now)


def _sent(tx: Tx, *, message: Claimed, now: datetime) -> None:
    tx.run(
        "UPDATE outbox SET state = 'sent', sent_at = ?, last_error = NULL, payload = ?j"
        " WHERE id = ?",
        (tx.time(now), tx.json(_kept(message)), message.id),
    )


def _mark_skipped(skipped: list[tuple[Claimed, str]]) -> Callable[[Tx], None]:
    return functools.partial(_skip, skipped=skipped)


def _skip(tx: Tx, *, skipped: list[tuple[Claimed, str]]) -> None:
    for message, reason in skipped:
        tx.run(
            "UPDATE outbox SET state = 'skipped', last_error = ?, payload = ?j WHERE id = ?",
            (reason, tx.json(_kept(message)), message.id),
        )


def _mark_retry(message: Claimed, due: datetime, error: str) -> Callable[[Tx], None]:
    return functools.partial(_retry, message=message, due=due, error=error)


def _retry(tx: Tx, *, message: Claimed, due: datetime, error: str) -> None:
    tx.run(
        "UPDATE outbox SET next_attempt_at = ?, last_error = ? WHERE id = ?",
        (tx.time(due), error[:500], message.id),
    )


def _mark_failed(message: Claimed, now: datetime, error: str) -> Callable[[Tx], None]:
    return functools.partial(_failed, message=message, now=now, error=error)


def _failed(tx: Tx, *, message: Claimed, now: datetime, error: str) -> None:
    tx.run(
        "UPDATE outbox SET state = 'failed', last_error = ?, payload = ?j WHERE id = ?",
        (error[:500], tx.json(_kept(message)), message.id),
    )
    append_tx(
        tx,
        at=now,
        actor="system",
        action=f"notify:{message.channel}_failed",
        subject=message.event_id,
        data={"attempts": message.attempt, "error": error[:200]},
    )


def _backoff(attempt: int, settings: NotifySettings) -> float:
    base = min(settings.retry_base_seconds * 2 ** (attempt - 1), settings.retry_max_seconds)
    return float(base * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not a secret


def _kept(message: Claimed) -> dict[str, Any]:
    """What a final message's row keeps: a webhook's event (ids and states, nothing
    secret); of an email, its subject and ids, never its text (it may hold a live link)."""
    if message.channel != Channel.EMAIL:
        return message.payload
    return {
        key: value
        for key, value in message.payload.items()
        if key == "subject" or key.endswith("_id")
    }


def _one_line(value: str) -> str:
    """`value` with every run of whitespace, line breaks included, made one space."""
    return " ".join(value.split())
