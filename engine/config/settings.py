"""The settings objects and how config.toml and the environment become them (see the package)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine.config.schema import REQUIRED, SCHEMA, env_variable
from engine.errors import ConfigError
from engine.sourcemap import Document, load_document

DEFAULT_CONFIG = Path("config.toml")


@dataclass(frozen=True)
class DkimSettings:
    domain: str
    selector: str
    private_key_file: Path


@dataclass(frozen=True)
class EmailSettings:
    transport: str = "smtp"
    host: str = "127.0.0.1"
    port: int = 2525
    from_address: str = "Kairos News <news@example.com>"
    starttls: bool = False
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    max_connections: int = 20
    timeout: float = 30.0
    dkim: DkimSettings | None = None
    return_path: str | None = None
    unsubscribe_mailto: str | None = None
    ca_file: Path | None = None
    pipelining: bool = True


@dataclass(frozen=True)
class TrackingSettings:
    base_url: str = "http://127.0.0.1:8025"
    secret_env: str = "KAIROS_SECRET"
    secret: bytes | None = field(default=None, repr=False)
    api_key_env: str = "KAIROS_API_KEY"
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class FcmSettings:
    project_id: str
    credentials_file: Path
    endpoint: str = "https://fcm.googleapis.com"
    ca_file: Path | None = None


@dataclass(frozen=True)
class ApnsSettings:
    team_id: str
    key_id: str
    key_file: Path
    topic: str
    endpoint: str = "https://api.push.apple.com"
    ca_file: Path | None = None


@dataclass(frozen=True)
class WebPushSettings:
    vapid_private_key_file: Path
    subject: str
    ca_file: Path | None = None


@dataclass(frozen=True)
class PathSettings:
    campaigns: Path = Path("campaigns")
    templates: Path = Path("templates")
    models: Path = Path("models")
    inbox: Path = Path("inbox")


@dataclass(frozen=True)
class SendingSettings:
    """How the pump sends: batch size, limits, retries, and when to pause a run.

    Rates are messages per second (``None``: unlimited); a campaign's ``[limits]`` may lower them.
    """

    batch_size: int = 500
    rate_limit: float | None = None
    domain_rate_limit: float | None = None
    domain_concurrency: int | None = None
    retry_attempts: int = 3
    retry_backoff: float = 1.0
    retry_backoff_max: float = 300.0
    max_attempts: int = 4
    pause_after: int = 20
    quiet_hours: tuple[int, int] | None = None
    daily_cap: int | None = None


@dataclass(frozen=True)
class DaemonSettings:
    """``kairos daemon``: how often it looks for due work, and its periodic duties.

    ``lease``: a claim older than this belongs to a sender that died (the crash rule applies).
    """

    poll_interval: float = 1.0
    lease: timedelta = timedelta(minutes=10)
    retrain_every: timedelta = timedelta(days=1)
    trigger_lookback: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class SegmentSettings:
    """Persona segments: how often they are rebuilt, the smallest segment kept, the range of k tried."""

    rebuild_every: timedelta = timedelta(days=7)
    min_size: int = 50
    k_min: int = 2
    k_max: int = 8


@dataclass(frozen=True)
class Settings:
    """Everything configurable, typed. Build with :meth:`load`."""

    database_url: str = "sqlite:///kairos.db"
    email: EmailSettings = EmailSettings()
    tracking: TrackingSettings = TrackingSettings()
    fcm: FcmSettings | None = None
    apns: ApnsSettings | None = None
    webpush: WebPushSettings | None = None
    paths: PathSettings = PathSettings()
    sending: SendingSettings = SendingSettings()
    segments: SegmentSettings = SegmentSettings()
    daemon: DaemonSettings = DaemonSettings()
    source: Path | None = None

    @classmethod
    def load(cls, path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Load ``path`` (default ``./config.toml`` if it exists) and apply the environment.

        :param path: an explicit file; it must exist.
        :param environ: the environment to read overrides and secrets from (default os.environ).
        """
        env = os.environ if environ is None else environ
        if path is None:
            path = DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None
        document = load_document(path, ConfigError) if path is not None else None
        return _build(document, env)


def _collect(document: Document | None) -> dict[str, dict[str, Any]]:
    """Flatten the file into {section: {key: raw value}}, refusing unknown sections and keys."""
    found: dict[str, dict[str, Any]] = {}
    if document is None:
        return found

    def walk(prefix: str, table: dict[str, Any]) -> None:
        for key, value in table.items():
            dotted = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                if dotted not in SCHEMA and not any(s.startswith(dotted + ".") for s in SCHEMA):
                    raise ConfigError(document.path, dotted, "unknown section; expected one of "
                                      + ", ".join(f"[{s}]" for s in SCHEMA), line=document.line_of(dotted))
                walk(dotted, value)
            elif prefix in SCHEMA and key in SCHEMA[prefix]:
                found.setdefault(prefix, {})[key] = value
            else:
                known = ", ".join(SCHEMA.get(prefix, {})) or "none (this is not a section)"
                raise ConfigError(document.path, dotted, f"unknown key; [{prefix}] takes {known}",
                                  line=document.line_of(dotted))

    walk("", document.data)
    return found


def _build(document: Document | None, env: Mapping[str, str]) -> Settings:
    raw = _collect(document)
    source = document.path if document is not None else None
    for section, keys in SCHEMA.items():
        for key in keys:
            name = env_variable(section, key)
            if name in env:
                raw.setdefault(section, {})[key] = env[name]

    values: dict[str, dict[str, Any]] = {}
    for section, keys in raw.items():
        for key, value in keys.items():
            try:
                values.setdefault(section, {})[key] = SCHEMA[section][key](value)
            except ValueError as exc:
                dotted = f"{section}.{key}"
                name = env_variable(section, key)
                where: Path | str | None = f"${name}" if name in env else source
                line = document.line_of(dotted) if document is not None and name not in env else None
                raise ConfigError(where, dotted, f"expected {exc}, got {value!r}", line=line) from None
    for section, needed in REQUIRED.items():
        if section in values:
            missing = [k for k in needed if k not in values[section]]
            if missing:
                line = document.line_of(section) if document is not None else None
                raise ConfigError(source, section, "missing " + ", ".join(missing), line=line)

    base = Path.cwd()

    def resolve(value: str | Path) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path

    def secret(section: str, key: str, default_env: str) -> str | None:
        name = values.get(section, {}).get(key, default_env)
        return env.get(name) or None

    email = values.get("email", {})
    dkim = values.get("email.dkim")
    tracking = values.get("tracking", {})
    tracking_secret = secret("tracking", "secret_env", "KAIROS_SECRET")
    fcm = values.get("push.fcm")
    apns = values.get("push.apns")
    webpush = values.get("push.webpush")
    paths = values.get("paths", {})
    defaults = PathSettings()
    return Settings(
        database_url=_resolve_sqlite(values.get("database", {}).get("url", Settings.database_url), base),
        email=EmailSettings(
            transport=email.get("transport", "smtp"),
            host=email.get("host", "127.0.0.1"),
            port=email.get("port", 2525),
            from_address=email.get("from", EmailSettings.from_address),
            starttls=email.get("starttls", False),
            tls=email.get("tls", False),
            username=email.get("username"),
            password=secret("email", "password_env", "KAIROS_EMAIL_PASSWORD"),
            max_connections=email.get("max_connections", 20),
            timeout=email.get("timeout", 30.0),
            dkim=DkimSettings(dkim["domain"], dkim["selector"], resolve(dkim["private_key_file"]))
            if dkim else None,
            return_path=email.get("return_path"),
            unsubscribe_mailto=email.get("unsubscribe_mailto"),
            ca_file=resolve(email["ca_file"]) if "ca_file" in email else None,
            pipelining=email.get("pipelining", True),
        ),
        tracking=TrackingSettings(
            base_url=tracking.get("base_url", TrackingSettings.base_url),
            secret_env=tracking.get("secret_env", "KAIROS_SECRET"),
            secret=tracking_secret.encode() if tracking_secret else None,
            api_key_env=tracking.get("api_key_env", "KAIROS_API_KEY"),
            api_key=secret("tracking", "api_key_env", "KAIROS_API_KEY"),
        ),
        fcm=FcmSettings(fcm["project_id"], resolve(fcm["credentials_file"]),
                        fcm.get("endpoint", FcmSettings.endpoint),
                        resolve(fcm["ca_file"]) if "ca_file" in fcm else None) if fcm else None,
        apns=ApnsSettings(apns["team_id"], apns["key_id"], resolve(apns["key_file"]), apns["topic"],
                          apns.get("endpoint", ApnsSettings.endpoint),
                          resolve(apns["ca_file"]) if "ca_file" in apns else None) if apns else None,
        webpush=WebPushSettings(resolve(webpush["vapid_private_key_file"]), webpush["subject"],
                                resolve(webpush["ca_file"]) if "ca_file" in webpush else None)
        if webpush else None,
        paths=PathSettings(
            campaigns=resolve(paths.get("campaigns", defaults.campaigns)),
            templates=resolve(paths.get("templates", defaults.templates)),
            models=resolve(paths.get("models", defaults.models)),
            inbox=resolve(paths.get("inbox", defaults.inbox)),
        ),
        segments=_segments(values.get("segments", {}), source, document),
        daemon=DaemonSettings(**values.get("daemon", {})),
        sending=SendingSettings(**values.get("sending", {})),
        source=source,
    )


def _segments(values: dict[str, Any], source: Path | None, document: Document | None) -> SegmentSettings:
    default = SegmentSettings()
    settings = SegmentSettings(rebuild_every=values.get("rebuild_every", default.rebuild_every),
                               min_size=values.get("min_size", default.min_size),
                               k_min=values.get("k_min", default.k_min), k_max=values.get("k_max", default.k_max))
    if settings.k_max < settings.k_min:
        line = document.line_of("segments.k_max") if document is not None else None
        raise ConfigError(source, "segments.k_max", f"expected at least k_min ({settings.k_min}), "
                          f"got {settings.k_max}", line=line)
    return settings


def _resolve_sqlite(url: str, base: Path) -> str:
    """Make a relative ``sqlite:///file.db`` absolute, relative to ``base`` (the working directory)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:":
        path = Path(url[len(prefix):])
        if not path.is_absolute():
            return prefix + str(base / path)
    return url
