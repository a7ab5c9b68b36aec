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
    (480, 1260). ``quiet_hours`` is (start, end) in minutes too, and may wrap midnight:
    ("22:00", "07:00") is (1320, 420); no message goes out inside it. ``timezone`` is
    ``recipient`` (each recipient's own) or an IANA zone name.
    """

    cron: str | None = None
    at: datetime | None = None
    trigger: Trigger | None = None
    timezone: str = "recipient"
    window: tuple[int, int] = (0, 24 * 60)
    send_time: str = "fixed"
    quiet_hours: tuple[int, int] | None = None

    @property
    def whole_day(self) -> bool:
        """True when messages may go out at any local hour."""
        return self.window == (0, 24 * 60)


@dataclass(frozen=True)
class FrequencyCap:
    max: int
    per: timedelta


@dataclass(frozen=True)
class Predicted:
    """A predicted audience: whoever is likely enough to reach the goal with this content.

    Exactly one is set: ``min_probability`` (a predicted probability of at least this), or
    ``top_percent`` (the most likely N% of the recipients who pass ``where``).
    """

    min_probability: float | None = None
    top_percent: float | None = None


@dataclass(frozen=True)
class Tiers:
    """Propensity tiers as cumulative top percentages of the score distribution.

    ``high`` is the top ``high``% of recipients by predicted probability, ``medium`` the next
    ones up to the top ``medium``%, ``low`` the rest.
    """

    high: float = 20.0
    medium: float = 50.0


@dataclass(frozen=True)
class Audience:
    where: Rule | None = None
    holdout: float = 0.0
    frequency_cap: FrequencyCap | None = None
    predicted: Predicted | None = None
    tiers: Tiers = Tiers()

    @property
    def needs_scores(self) -> bool:
        """True when building the audience needs predicted probabilities (predicted or tier())."""
        return self.predicted is not None or (self.where is not None and self.where.uses("tier"))


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
class Staged:
    """A one-off send tested in stages: ``explore`` share first, the rest ``wait`` later."""

    explore: float
    wait: timedelta


@dataclass(frozen=True)
class GuardrailLimits:
    """Pause a variant whose unsubscribe or complaint rate crosses these (after ``min_sends``)."""

    unsubscribe_rate: float = 1.0
    complaint_rate: float = 1.0
    min_sends: int = 200


@dataclass(frozen=True)
class Optimize:
    """How decisions learn: the variant bandit, exploration of variants, items, channels and
    hours, item exploration kind (``epsilon`` | ``softmax`` with ``temperature``), an optional
    staged test, an optional guardrail, and an optional ``confidence``: for one-item messages,
    keep the item best on average unless a deviation's gain proved positive at this confidence;
    and an optional ``exploration_decay``: the evidence (logged decisions) at which exploration
    has shrunk to 1/sqrt(2) of ``exploration`` (see :func:`engine.learn.exploration.decayed_exploration`)."""

    bandit: str = "thompson"
    exploration: float = 0.1
    item_exploration: str = "epsilon"
    temperature: float = 0.5
    staged: Staged | None = None
    guardrail: GuardrailLimits | None = None
    confidence: float | None = None
    exploration_decay: int | None = None
    #: run the variant bandit separately per persona ("segment") or propensity "tier"
    split_by: str | None = None


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
    utm: tuple[tuple[str, str], ...] = ()
    track_clicks: bool = True
    track_opens: bool = True
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
