"""CampaignSpec: a campaign file, validated once into frozen, typed objects.

Nothing downstream re-checks a field: if you hold a CampaignSpec, its cron parses, its templates
exist, its durations are positive and its rules parsed against the names they may use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from engine.spec.rules import Rule

BUILTIN_GOALS = ("open", "click", "convert", "share")
# The event type a goal is counted by: "convert" counts `conversion` events.
GOAL_EVENT = {"open": "open", "click": "click", "convert": "conversion", "share": "share"}
# Events that record what Kairos or the mailbox provider did, not what the recipient chose.
NOT_GOALS = ("sent", "delivered", "bounce", "unsubscribe", "complaint", "failed")


@dataclass(frozen=True)
class Trigger:
    event: str
    delay: timedelta


@dataclass(frozen=True)
class Schedule:
    """When a campaign runs and at what local hours its messages may go out.

    ``window`` is (first, last) minute of the local day, end exclusive: ("08:00", "21:00") is
    (480, 1260). ``timezone`` is ``recipient`` (each recipient's own) or an IANA zone name.
    """

    cron: str | None = None
    at: datetime | None = None
    trigger: Trigger | None = None
    timezone: str = "recipient"
    window: tuple[int, int] = (0, 24 * 60)
    send_time: str = "fixed"

    @property
    def whole_day(self) -> bool:
        """True when messages may go out at any local hour."""
        return self.window == (0, 24 * 60)


@dataclass(frozen=True)
class FrequencyCap:
    max: int
    per: timedelta


@dataclass(frozen=True)
class Audience:
    where: Rule | None = None
    holdout: float = 0.0
    frequency_cap: FrequencyCap | None = None


@dataclass(frozen=True)
class Diversity:
    by: str
    max_per_value: int


@dataclass(frozen=True)
class Content:
    pool: str
    where: Rule | None = None
    items: int = 1
    diversity: Diversity | None = None


@dataclass(frozen=True)
class Variant:
    """A message variant. ``push_*`` are the push notification's templates (title defaults to
    the subject, the link to the first item's URL)."""

    name: str
    subject: str
    template: str
    preheader: str = ""
    push_title: str = ""
    push_body: str = ""
    push_url: str = ""


@dataclass(frozen=True)
class Optimize:
    bandit: str = "thompson"
    exploration: float = 0.1


@dataclass(frozen=True)
class SendLimits:
    """A campaign's own sending limits (messages per second); they can only lower the config's."""

    rate: float | None = None
    domain_rate: float | None = None


@dataclass(frozen=True)
class CampaignSpec:
    """A validated campaign. ``source`` and ``spec_hash`` identify the file version it came from."""

    name: str
    goal: str
    goal_window: timedelta
    schedule: Schedule
    audience: Audience
    content: Content
    channels: tuple[str, ...]
    variants: tuple[Variant, ...]
    optimize: Optimize
    source: Path
    spec_hash: str
    description: str = ""
    limits: SendLimits = SendLimits()
    lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False)

    @property
    def goal_event(self) -> str:
        """The event type that counts as reaching the goal."""
        return GOAL_EVENT.get(self.goal, self.goal)

    def line_of(self, dotted: str) -> int | None:
        """The line in :attr:`source` where ``dotted`` is written, for errors found later."""
        return self.lines.get(dotted)

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)
