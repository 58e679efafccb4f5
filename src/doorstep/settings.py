"""Settings: environment variables (`DOORSTEP_*`, nested with `__`) over an optional TOML
file (named by `DOORSTEP_CONFIG`) over defaults. Built once by the CLI or a test and
passed to `create_app`; nothing reads settings at import time."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only ("localhost" or a loopback address); any
    other name is taken as remote (nothing is resolved)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# A mistake in the settings is reported without the values given: pydantic's error for a
# check over a whole section otherwise prints the section's input, passwords included.
_NO_INPUT_IN_ERRORS = ConfigDict(hide_input_in_errors=True)


class EntrySettings(BaseModel):
    model_config = _NO_INPUT_IN_ERRORS

    grant_ttl_seconds: int = Field(default=300, ge=10, le=3600)
    window_tolerance_seconds: int = Field(default=300, ge=0, le=3600)
    hub_reply_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    command_expiry_seconds: int = Field(default=30, ge=1, le=300)
    # Attempt limits, counted from recorded entries (so they hold across restarts).
    courier_attempts_per_minute: int = Field(default=10, ge=1)
    courier_denials_before_lockout: int = Field(default=5, ge=1)
    lockout_minutes: int = Field(default=15, ge=1, le=24 * 60)
    home_attempts_per_hour: int = Field(default=30, ge=1)
    # Every grant names the courier's phone key and the hub unlocks only on its proof.
    # Off only for benchmarks and tests that measure the unlock path without a phone.
    require_proof_of_possession: bool = True


class AuthSettings(BaseModel):
    model_config = _NO_INPUT_IN_ERRORS

    token_ttl_seconds: int = Field(default=3600, ge=60, le=30 * 86400)
    claim_code_ttl_seconds: int = Field(default=3600, ge=60)
    max_login_failures_per_minute: int = Field(default=10, ge=1)
    # "Forgot your password?" (`accounts.passwords`): how long an emailed link works, and
    # how many links one account is sent per hour (further requests are answered alike,
    # and send nothing).
    password_reset_ttl_seconds: int = Field(default=1800, ge=300, le=86400)
    password_resets_per_hour: int = Field(default=3, ge=1, le=20)


class NotifySettings(BaseModel):
    """Carrier webhooks and resident email (`doorstep.notify`)."""

    model_config = _NO_INPUT_IN_ERRORS

    # SMTP for resident email; empty: email is not sent (each message is set aside, skipped).
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    # STARTTLS, the server's certificate verified against the system's CAs (SSL_CERT_FILE
    # names others). Unset: on, unless `smtp_host` is a loopback address (a local sink).
    smtp_starttls: bool | None = None
    # SMTPS: TLS from the connection's first byte (as submission on port 465 wants), the
    # certificate verified as for STARTTLS. Unset: on when `smtp_port` is 465 (unless
    # `smtp_starttls` is on).
    smtp_implicit_tls: bool | None = None
    # Mail carries invitation and password-reset links: sending it in clear to a server
    # that is not on this machine is refused unless this is on (and neither kind of TLS is).
    smtp_allow_plaintext: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str = "Doorstep <doorstep@localhost>"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Loopback and private webhook targets are refused unless this is on (tests, development).
    allow_private_targets: bool = False
    poll_seconds: float = Field(default=0.5, gt=0, le=60)
    retry_base_seconds: float = Field(default=2.0, gt=0, le=3600)
    retry_max_seconds: float = Field(default=3600.0, gt=0, le=86400)
    max_attempts: int = Field(default=12, ge=1, le=100)

    @property
    def implicit_tls(self) -> bool:
        """Whether mail goes over SMTPS: as set, else on port 465 unless STARTTLS is on."""
        if self.smtp_implicit_tls is not None:
            return self.smtp_implicit_tls
        return self.smtp_port == 465 and not self.smtp_starttls

    @property
    def starttls(self) -> bool:
        """Whether mail goes over STARTTLS: never over SMTPS; else as set, else unless the
        server is loopback."""
        if self.implicit_tls:
            return False
        if self.smtp_starttls is not None:
            return self.smtp_starttls
        return self.smtp_host is not None and not is_loopback(self.smtp_host)

    @model_validator(mode="after")
    def _one_kind_of_tls(self) -> NotifySettings:
        if self.smtp_implicit_tls and self.smtp_starttls:
            raise ValueError(
                "notify.smtp_implicit_tls (DOORSTEP_NOTIFY__SMTP_IMPLICIT_TLS) and "
                "notify.smtp_starttls (DOORSTEP_NOTIFY__SMTP_STARTTLS) are both on: a server "
                "speaks one or the other (SMTPS, usually port 465; STARTTLS, usually 587)"
            )
        return self

    @model_validator(mode="after")
    def _remote_mail_is_encrypted(self) -> NotifySettings:
        if not self.smtp_host or self.implicit_tls or self.starttls:
            return self
        if self.smtp_allow_plaintext or is_loopback(self.smtp_host):
            return self
        raise ValueError(
            "notify.smtp_starttls (DOORSTEP_NOTIFY__SMTP_STARTTLS) is off for an SMTP server "
            "that is not on this machine: its mail (password-reset and invitation links) "
            "would cross the network in clear. Turn it (or SMTPS, "
            "DOORSTEP_NOTIFY__SMTP_IMPLICIT_TLS) on, or set "
            "DOORSTEP_NOTIFY__SMTP_ALLOW_PLAINTEXT=true to send in clear anyway"
        )


class ClipSettings(BaseModel):
    """Entry clips at the service (`doorstep.clips`)."""

    model_config = _NO_INPUT_IN_ERRORS

    # Largest chunk of a clip the hub may send in one request (the 64 KiB body limit of
    # every other route does not apply to the upload routes).
    upload_chunk_bytes: int = Field(default=1024 * 1024, ge=64 * 1024, le=16 * 1024 * 1024)
    # How often the retention job runs; clips older than their home's retention (30 days
    # unless the resident chose otherwise) are deleted and their keys destroyed.
    retention_sweep_seconds: float = Field(default=3600.0, gt=0)
    # Uploads left unfinished this long lose their staged bytes.
    abandon_upload_hours: float = Field(default=48.0, gt=0)
    # Drop-zone motion analysis after each stored clip.
    analyse_motion: bool = True
    # Where the encrypted clip objects go: "file" (<data dir>/clips/objects) or "s3", a
    # bucket of any S3-compatible endpoint (`video.s3`). The keys that open the clips stay
    # under the data dir either way. Without an access key, boto3's own chain (AWS_*
    # variables, instance role) supplies the credentials.
    store: Literal["file", "s3"] = "file"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # "path" (endpoint/bucket/key) suits MinIO, Ceph and most self-hosted endpoints.
    s3_addressing_style: Literal["path", "virtual"] = "path"

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> ClipSettings:
        if self.store != "s3":
            return self
        missing = [
            f"clips.{name} (DOORSTEP_CLIPS__{name.upper()})"
            for name in ("s3_endpoint_url", "s3_bucket")
            if not getattr(self, name)
        ]
        if missing:
            raise ValueError(f"clips.store = 's3' needs {' and '.join(missing)}")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("set both s3_access_key_id and s3_secret_access_key, or neither")
        return self


class HubLinkSettings(BaseModel):
    """Each hub's message budget at the service's ingest (`hublink.link.MessageBudget`):
    what a hub sends beyond it is dropped unread (its events are resent until stored)."""

    model_config = _NO_INPUT_IN_ERRORS

    # Events, replies, status and reported documents. The burst holds what a hub sends at
    # once on reconnecting: its status, its reported document and a batch of up to 500
    # unacknowledged events (`hub.journal`), so that a backlog of that size is never
    # dropped; a longer one is resent every 3 s until stored, at the sustained rate, which
    # is far above what entries need (a few messages each) and far below what the writer
    # does (thousands a second). A hub with many doors may need more.
    messages_per_second: float = Field(default=20.0, gt=0, le=100_000)
    message_burst: int = Field(default=600, ge=1, le=1_000_000)
    # Camera heartbeats (one a second per entry in progress) have a budget of their own:
    # a backlog's resends must never crowd them out, or their silence would raise
    # camera_lost.
    camera_beats_per_second: float = Field(default=20.0, gt=0, le=100_000)
    camera_beat_burst: int = Field(default=40, ge=1, le=1_000_000)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DOORSTEP_", env_nested_delimiter="__", hide_input_in_errors=True
    )

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("var")
    # The database URLs hold passwords: kept out of `repr` (other modules read them as
    # plain strings, so they are not `SecretStr`).
    database_url: str | None = Field(default=None, repr=False)
    # PostgreSQL only: the role that owns the schema and runs the migrations. With it,
    # `database_url`'s role owns nothing and may not change or delete the audit log
    # (`doorstep.db.migrate`); without it, that one role does both.
    database_owner_url: str | None = Field(default=None, repr=False)
    # mqtt://user:password@host:port, or mqtts://... (TLS, port 8883 by default) with an
    # optional ?ca_file=/path/ca.pem: the one CA trusted for the broker's certificate
    # (unset: the system's CAs), also given to hubs at enrollment. Empty: `serve` starts
    # and supervises its own Mosquitto.
    broker_url: SecretStr | None = None
    # MQTT client id of this service process; give each `serve` process its own.
    broker_client_id: str = "doorstep-service"
    # Port of the Mosquitto that `serve` supervises (chosen once and remembered if unset).
    managed_broker_port: int | None = None
    # Address hubs are told to use (defaults to the broker the service itself uses).
    broker_public_host: str | None = None
    # A TLS listener for hubs on the Mosquitto that `serve` supervises: its certificate
    # (chain) and key, PEM files Mosquitto reads. Set both, or neither. Hubs are then told
    # this listener (at broker_public_host, a name the certificate must hold); the service
    # keeps the loopback one.
    broker_tls_cert_file: Path | None = None
    broker_tls_key_file: Path | None = None
    # The CA that signed that certificate, given to hubs to trust alone for it; unset:
    # hubs check it against their system's CAs.
    broker_tls_ca_file: Path | None = None
    # The address the TLS listener binds; unset: every interface (hubs are elsewhere).
    broker_tls_host: str | None = None
    broker_tls_port: int = Field(default=8883, gt=0, lt=65536)
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # The reverse proxies in front of `serve`, by address or network (comma-separated in
    # DOORSTEP_TRUSTED_PROXIES): a request from one of them is taken to come from the
    # client its X-Forwarded-For names, and the per-address limits (sign-in, password
    # reset, claim codes) count that client; anyone else's X-Forwarded-For is ignored.
    # The default is a proxy on this machine; a proxy on another must be named here, or
    # every request counts as the proxy's and one client's attempts lock out everyone.
    # Empty: nobody's.
    trusted_proxies: Annotated[list[str], NoDecode] = ["127.0.0.1", "::1"]
    # Where users reach the service (https://doorstep.example): emailed links are built
    # from it, never from the request. Needed in production and on a non-loopback
    # `http_host`; unset on loopback, http://<http_host>:<http_port>.
    public_url: str | None = None
    # Passkeys (`accounts.passkeys`): the WebAuthn relying party ID, a domain name that is
    # the public URL's host or ends it (example.com for https://doorstep.example.com; an
    # IP address cannot be one, `localhost` can). Passkeys registered under one ID work
    # only under it. Unset: the public URL's host, unless that is an IP address: then
    # passkeys are off. Their origin is always the public URL's.
    passkey_rp_id: str | None = None
    # The entry decisions and what hubs send are stored by a child process of the service
    # (`doorstep.hotwriter`), so they do not share the service's one GIL with the HTTP
    # loop and the MQTT client. Off: the service's own writer thread does it.
    writer_process: bool = True
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "NORMAL"
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # `GET /metrics` answers only `Authorization: Bearer <this>`; unset, it does not exist.
    metrics_token: SecretStr | None = None
    entry: EntrySettings = EntrySettings()
    auth: AuthSettings = AuthSettings()
    notify: NotifySettings = NotifySettings()
    clips: ClipSettings = ClipSettings()
    hublink: HubLinkSettings = HubLinkSettings()

    @model_validator(mode="after")
    def _production_needs_explicit_storage(self) -> Settings:
        if self.environment == "production" and not self.database_url:
            raise ValueError("production needs DOORSTEP_DATABASE_URL set explicitly")
        return self

    @model_validator(mode="after")
    def _reachable_links_need_a_public_url(self) -> Settings:
        # Without it a link names the listening address (http://0.0.0.0:8000 reaches
        # nobody), and some pages would take the request's Host header, which anyone
        # sending the request chooses.
        if self.environment == "production" and not (self.public_url or "").startswith("https://"):
            raise ValueError(
                "production needs DOORSTEP_PUBLIC_URL set to the https:// address users reach"
            )
        if self.public_url is None and not is_loopback(self.http_host):
            raise ValueError(
                "serving on an address other than loopback (DOORSTEP_HTTP_HOST) needs "
                "DOORSTEP_PUBLIC_URL: emailed links are built from it"
            )
        return self

    @model_validator(mode="after")
    def _broker_tls_listener_is_whole(self) -> Settings:
        if (self.broker_tls_cert_file is None) != (self.broker_tls_key_file is None):
            raise ValueError("set both broker_tls_cert_file and broker_tls_key_file, or neither")
        if self.broker_tls_ca_file is not None and self.broker_tls_cert_file is None:
            raise ValueError("broker_tls_ca_file is the CA of broker_tls_cert_file: set that")
        if self.broker_tls_cert_file is not None and self.broker_url is not None:
            raise ValueError(
                "broker_tls_cert_file is for the broker `serve` runs; with broker_url, "
                "give hubs an mqtts:// broker instead"
            )
        return self

    @model_validator(mode="after")
    def _owner_is_another_postgres_role(self) -> Settings:
        if self.database_owner_url is None:
            return self
        from sqlalchemy.engine import make_url

        url = self.resolved_database_url
        if not (url.startswith("postgresql") and self.database_owner_url.startswith("postgresql")):
            raise ValueError("database_owner_url is for PostgreSQL: set both URLs to postgresql://")
        service, owner = make_url(url), make_url(self.database_owner_url)
        if (service.host, service.port, service.database) != (
            owner.host,
            owner.port,
            owner.database,
        ):
            raise ValueError("database_owner_url must name the same server and database")
        if service.username == owner.username:
            raise ValueError("database_owner_url must log in as another role than database_url")
        return self

    @field_validator("public_url")
    @classmethod
    def _public_url_is_absolute(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme, _, rest = value.partition("://")
        if scheme not in ("http", "https") or not rest.split("/", 1)[0]:
            raise ValueError("public_url must be an absolute http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _passkey_rp_id_covers_the_public_url(self) -> Settings:
        rp_id = self.passkey_rp_id
        if rp_id is None:
            return self
        if rp_id != rp_id.lower() or not rp_id or _is_ip(rp_id) or not _HOST.fullmatch(rp_id):
            raise ValueError("passkey_rp_id must be a lowercase domain name, like example.com")
        host = self.public_host
        if host != rp_id and not host.endswith(f".{rp_id}"):
            raise ValueError(
                f"passkey_rp_id must be the public URL's host ({host}) or a domain it is in"
            )
        return self

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies_may_be_a_comma_separated_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [entry.strip() for entry in value.split(",") if entry.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses_or_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                if "/" in entry:
                    ipaddress.ip_network(entry)
                else:
                    ipaddress.ip_address(entry)
            except ValueError as exc:
                raise ValueError(
                    f"{exc} (give IP addresses or networks such as 10.0.0.0/8, comma-separated)"
                ) from None
        return value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token_is_long(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("metrics_token must be at least 32 characters (a random token)")
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'doorstep.db').resolve()}"

    @property
    def resolved_public_url(self) -> str:
        return self.public_url or f"http://{self.http_host}:{self.http_port}"

    @property
    def public_host(self) -> str:
        """The host (no port) of the public URL, lowercase."""
        return urlsplit(self.resolved_public_url).hostname or ""

    @property
    def public_origin(self) -> str:
        """`scheme://host[:port]` of the public URL, as browsers send it as the origin (no
        path, no user, no default port)."""
        parts = urlsplit(self.resolved_public_url)
        host = f"[{self.public_host}]" if ":" in self.public_host else self.public_host
        port = parts.port if parts.port not in (None, _DEFAULT_PORTS[parts.scheme]) else None
        return f"{parts.scheme}://{host}" + (f":{port}" if port else "")

    @property
    def resolved_passkey_rp_id(self) -> str | None:
        """The passkeys' relying party ID; None when passkeys are off (an IP address)."""
        if self.passkey_rp_id is not None:
            return self.passkey_rp_id
        host = self.public_host
        return None if not host or _is_ip(host) else host

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("DOORSTEP_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and file, with the given non-None values on top."""
    given: dict[str, Any] = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**given)
