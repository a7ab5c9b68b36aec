"""Settings: config.toml plus ``KAIROS_*`` environment overrides, validated into frozen objects.

Built once at the entry point (``Settings.load``) and passed down; nothing else reads the file
or the environment. Every key of config.toml has an environment override named after its path:
``email.port`` is ``KAIROS_EMAIL_PORT``, ``email.dkim.selector`` is ``KAIROS_EMAIL_DKIM_SELECTOR``.
Secrets are never written in the file: the file names the variable that holds them
(``tracking.secret_env``, ``email.password_env``, ``tracking.api_key_env``).

Relative paths (and a relative SQLite file) are resolved against the working directory, like
every path given on the command line: ``kairos send x --config ops/prod.toml`` run from a project
root finds that root's ``campaigns/`` and ``templates/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
class _SegmentSettingsMarker:  # placeholder removed below
    pass


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


# The schema: section -> key -> parser. A parser takes the raw value and returns the typed one,
# or raises ValueError with what was expected.

def _str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty string")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a whole number")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if not isinstance(value, int):
        raise ValueError("a whole number")
    return value


def _positive_int(value: Any) -> int:
    number = _int(value)
    if number < 1:
        raise ValueError("a whole number of at least 1")
    return number


def _port(value: Any) -> int:
    number = _int(value)
    if not 0 < number < 65536:
        raise ValueError("a port number between 1 and 65535")
    return number


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError("a number") from None


def _positive_float(value: Any) -> float:
    number = _float(value)
    if not number > 0:
        raise ValueError("a number greater than 0")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ValueError("true or false")


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError("one of " + ", ".join(repr(o) for o in options))
        return str(value)

    return parse


def _database_url(value: Any) -> str:
    url = _str(value)
    if not url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise ValueError("a sqlite:/// or postgresql+psycopg:// URL")
    return url


def _http_url(value: Any) -> str:
    url = _str(value).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("an http:// or https:// URL")
    return url


def _mailbox(value: Any) -> str:
    address = _str(value).strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or not address.isascii() or any(c in address for c in " <>\"+"):
        raise ValueError("a plain mailbox such as bounces@example.com (no name, no '+')")
    return address


def _duration(value: Any) -> timedelta:
    match = re.match(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$", _str(value).strip())
    if not match or not any(match.groups()):
        raise ValueError("a duration such as '30s', '10m', '24h', '7d' or '2w'")
    weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def _quiet_hours(value: Any) -> tuple[int, int]:
    expected = 'two local times ["HH:MM", "HH:MM"], e.g. ["21:00", "08:00"] (may wrap midnight)'
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise ValueError(expected)
    minutes = []
    for text in value:
        match = re.match(r"^([01]\d|2[0-3]):([0-5]\d)$", text)
        if not match:
            raise ValueError(expected)
        minutes.append(int(match.group(1)) * 60 + int(match.group(2)))
    if minutes[0] == minutes[1]:
        raise ValueError(expected + ", not the same time twice")
    return minutes[0], minutes[1]


def _cluster_count(value: Any) -> int:
    number = _int(value)
    if not 2 <= number <= 30:
        raise ValueError("a whole number from 2 to 30")
    return number


def _env_name(value: Any) -> str:
    name = _str(value)
    if not name.replace("_", "").isalnum():
        raise ValueError("the name of an environment variable")
    return name


SCHEMA: dict[str, dict[str, Callable[[Any], Any]]] = {
    "database": {"url": _database_url},
    "email": {
        "transport": _choice("smtp", "inbox"),
        "host": _str,
        "port": _port,
        "from": _str,
        "starttls": _bool,
        "tls": _bool,
        "username": _str,
        "password_env": _env_name,
        "max_connections": _positive_int,
        "timeout": _float,
        "return_path": _mailbox,
        "unsubscribe_mailto": _mailbox,
        "ca_file": _str,
        "pipelining": _bool,
    },
    "email.dkim": {"domain": _str, "selector": _str, "private_key_file": _str},
    "tracking": {"base_url": _http_url, "secret_env": _env_name, "api_key_env": _env_name},
    "push.fcm": {"project_id": _str, "credentials_file": _str, "endpoint": _http_url, "ca_file": _str},
    "push.apns": {"team_id": _str, "key_id": _str, "key_file": _str, "topic": _str, "endpoint": _http_url,
                  "ca_file": _str},
    "push.webpush": {"vapid_private_key_file": _str, "subject": _str, "ca_file": _str},
    "paths": {"campaigns": _str, "templates": _str, "models": _str, "inbox": _str},
    "segments": {"rebuild_every": _duration, "min_size": _positive_int, "k_min": _cluster_count,
                 "k_max": _cluster_count},
    "sending": {"batch_size": _positive_int, "rate_limit": _positive_float, "domain_rate_limit": _positive_float,
                "domain_concurrency": _positive_int, "retry_attempts": _positive_int,
                "retry_backoff": _positive_float, "retry_backoff_max": _positive_float,
                "max_attempts": _positive_int, "pause_after": _positive_int, "quiet_hours": _quiet_hours,
                "daily_cap": _positive_int},
    "daemon": {"poll_interval": _positive_float, "lease": _duration, "retrain_every": _duration,
               "trigger_lookback": _duration},
}
REQUIRED = {
    "email.dkim": ("domain", "selector", "private_key_file"),
    "push.fcm": ("project_id", "credentials_file"),
    "push.apns": ("team_id", "key_id", "key_file", "topic"),
    "push.webpush": ("vapid_private_key_file", "subject"),
}


def env_variable(section: str, key: str) -> str:
    """The environment variable that overrides ``section.key``."""
    return "KAIROS_" + f"{section}.{key}".replace(".", "_").upper()


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
    """Make a relative ``sqlite:///file.db`` relative to the config file, not the working dir."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:":
        path = Path(url[len(prefix):])
        if not path.is_absolute():
            return prefix + str(base / path)
    return url
