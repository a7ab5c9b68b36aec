"""The one exception tree of Kairos.

::

    KairosError                  exit_code: what `kairos` exits with
    ├── InputError               2 - bad input; the message names the file, line or field
    │   ├── SpecError            a campaign file (or its template) is wrong
    │   ├── ConfigError          config.toml or a KAIROS_* variable is wrong
    │   ├── DataError            an import file (recipients, devices, content, events) is wrong
    │   └── RenderError          a template fails to compile or render
    └── RuntimeFailure           1 - failure at run time; the message says what state it left
        ├── StoreError           the database cannot be reached or refused a write
        ├── DispatchError        a message could not be handed over
        │   ├── SmtpError
        │   └── PushError
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
    """

    def __init__(self, transport: str, problem: str, *, permanent: bool = False) -> None:
        self.transport = transport
        self.problem = problem
        self.permanent = permanent
        super().__init__(f"{transport}: {problem}")


class SmtpError(DispatchError):
    """An SMTP server refused or dropped a message."""

    def __init__(self, problem: str, *, code: int | None = None, permanent: bool = False) -> None:
        self.code = code
        super().__init__("smtp", problem if code is None else f"{code} {problem}", permanent=permanent)


class PushError(DispatchError):
    """A push provider refused a notification."""


class ModelError(RuntimeFailure):
    """A model could not be trained, loaded or applied."""
