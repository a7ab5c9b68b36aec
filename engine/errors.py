"""The one exception tree of Kairos.

::

    KairosError                  exit_code: what `kairos` exits with
    ├── InputError               2 - bad input; the message names the file, line or field
    │   ├── SpecError            a campaign file (or its template) is wrong
    │   │   └── NothingToTrain   no logged sends of the campaign's pool to learn from yet
    │   ├── ConfigError          config.toml or a KAIROS_* variable is wrong
    │   ├── DataError            an import file (recipients, devices, content, events) is wrong
    │   └── RenderError          a template fails to compile or render
    └── RuntimeFailure           1 - failure at run time; the message says what state it left
        ├── StoreError           the database cannot be reached or refused a write
        ├── DispatchError        a message could not be handed over
        │   ├── SmtpError
        │   ├── PushError
        │   └── DispatchPaused   too many consecutive server failures: the run pauses
        └── ModelError           a model cannot be trained, loaded or applied

Messages are built in ``__init__`` from the offending values, so every raise site reads as data
(``SpecError(path, "schedule.cron", "a 5-field cron expression", line=4)``) and every message
has the same shape: ``file:line: field: problem``.
"""

from __future__ import annotations

from pathlib import Path


class KairosError(Exception):
    """Root of every error Kairos raises on purpose."""

    exit_code = 1


class InputError(KairosError):
    """Something a user wrote is wrong; exit code 2, nothing stored is touched."""

    exit_code = 2


class RuntimeFailure(KairosError):
    """Something failed while running; exit code 1."""

    exit_code = 1


def _where(path: Path | str | None, line: int | None, field: str | None) -> str:
    parts = []
    if path is not None:
        parts.append(str(path) if line is None else f"{path}:{line}")
    if field:
        parts.append(field)
    return ": ".join(parts)


class LocatedError(InputError):
    """An input error with a place: file, line (1-based) and dotted field name."""

    def __init__(
        self,
        path: Path | str | None,
        field: str | None,
        problem: str,
        *,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.field = field
        self.problem = problem
        self.line = line
        self.column = column
        where = _where(path, line, field)
        if column is not None:
            where = f"{where} (column {column})" if where else f"column {column}"
        super().__init__(f"{where}: {problem}" if where else problem)


class SpecError(LocatedError):
    """A campaign file is invalid: unknown key, wrong type, bad cron, missing template ..."""


class NothingToTrain(SpecError):
    """A campaign's content pool has no logged impressions to train its ranker on (yet)."""


class ConfigError(LocatedError):
    """config.toml, or a KAIROS_* environment override, is invalid."""


class DataError(LocatedError):
    """A row of an import file is invalid; the whole file is rejected."""


class RenderError(LocatedError):
    """A template failed to compile or render (including sandbox violations)."""


class StoreError(RuntimeFailure):
    """The database failed; the message says what was being done."""

    def __init__(self, action: str, cause: BaseException | str) -> None:
        self.action = action
        # SQLAlchemy's messages carry the statement and every bound row; keep the driver's reason.
        reason = str(getattr(cause, "orig", None) or cause).strip().splitlines()
        super().__init__(f"database error while {action}: {reason[0] if reason else type(cause).__name__}")


class DispatchError(RuntimeFailure):
    """A message could not be handed to its transport.

    :param permanent: True when retrying cannot help (a 5xx, an invalid token).
    :param server: True when the server or the connection failed rather than this one message
        (a dropped connection, a 421, a timeout, a 503): what pauses a run when it repeats.
    :param retry_after: seconds the server asked us to wait before trying again, if it said.
    :param ambiguous: the message was handed over whole and the connection failed before the
        server's answer: it may have been delivered, so it is neither retried nor dropped.
    """

    def __init__(self, transport: str, problem: str, *, permanent: bool = False, server: bool = False,
                 retry_after: float | None = None, ambiguous: bool = False) -> None:
        self.transport = transport
        self.problem = problem
        self.permanent = permanent
        self.server = server
        self.retry_after = retry_after
        self.ambiguous = ambiguous
        super().__init__(f"{transport}: {problem}")


class SmtpError(DispatchError):
    """An SMTP server refused or dropped a message.

    :param recipient: True when the server refused the recipient (at RCPT): a 5xx then is a
        hard bounce and suppresses the address.
    """

    def __init__(self, problem: str, *, code: int | None = None, permanent: bool = False,
                 recipient: bool = False, server: bool = False, ambiguous: bool = False) -> None:
        self.code = code
        self.recipient = recipient
        super().__init__("smtp", problem if code is None else f"{code} {problem}", permanent=permanent,
                         server=server, ambiguous=ambiguous)


class PushError(DispatchError):
    """A push provider refused a notification.

    :param status: the HTTP status; :param reason: the provider's error code (``UNREGISTERED``,
        ``BadDeviceToken``, ``INVALID_ARGUMENT`` ...).
    :param device_gone: the token or subscription is no longer valid: deactivate the device.
    """

    def __init__(self, provider: str, problem: str, *, status: int | None = None, reason: str | None = None,
                 permanent: bool = False, server: bool = False, retry_after: float | None = None,
                 device_gone: bool = False) -> None:
        self.status = status
        self.reason = reason
        self.device_gone = device_gone
        super().__init__(provider, problem, permanent=permanent or device_gone, server=server,
                         retry_after=retry_after)


class DispatchPaused(DispatchError):
    """The transport stopped accepting sends after ``failures`` consecutive server failures.

    Nothing was attempted: the message goes back to the queue untouched and the run pauses.
    """

    def __init__(self, transport: str, failures: int, last: str) -> None:
        self.failures = failures
        self.last = last
        super().__init__(transport, f"paused after {failures} consecutive server failures (last: {last})",
                         server=True)


class ModelError(RuntimeFailure):
    """A model could not be trained, loaded or applied."""
