"""A synthetic audience with known (hidden) tastes, and a content pool it reacts to.

Ground truth is planted so learning can be checked against it:

- each recipient belongs to one of a few *groups* (personas), whose topic tastes differ;
- a recipient's topic taste is drawn around their group's, so groups are recoverable but people
  still differ;
- each recipient has an active local hour (when they read mail) and a time zone;
- each recipient prefers a channel (email or push) and tires of frequent sends (fatigue);
- each recipient declared an interest when signing up (the ``interest`` attribute): their
  group's favourite topic for most, another topic for the rest, so attributes carry signal;
- each item has a topic and a quality.

How they answer a message is in :mod:`engine.sim.respond`. All randomness comes from the given
generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

TOPICS = ("sports", "politics", "tech", "culture", "travel", "food", "science", "business")
ZONES = ("Europe/Madrid", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo",
         "Australia/Sydney")
GROUP_NAMES = ("sports fans", "news readers", "techies", "culture lovers", "travellers")
FIRST_NAMES = ("Ana", "Bill", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jo", "Kemal", "Lena",
               "Mateo", "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tara")
ACTIVE_HOURS = (7, 8, 12, 13, 18, 19, 20, 21)
DECLARED_TRUTHFULLY = 0.75  # share whose declared interest is their group's favourite topic
TASTE_CONCENTRATION = 3.0   # a recipient's taste is Dirichlet(group_tastes() x this) around their group's
ENGAGEMENT_SHAPE, ENGAGEMENT_SCALE = 4.0, 0.25  # engagement is Gamma(shape, scale) (mean 1) ...
PRO_ENGAGEMENT = 1.3        # ... times this on the pro plan


@dataclass(frozen=True)
class Population:
    """Recipients with hidden tastes. Arrays are aligned with ``ids``."""

    ids: tuple[str, ...]
    group: np.ndarray          # int, index into GROUP_NAMES
    taste: np.ndarray          # (recipients x topics), rows sum to 1
    engagement: np.ndarray     # per-recipient multiplier of click probability
    active_hour: np.ndarray    # local hour they read mail
    zone: tuple[str, ...]
    plan: tuple[str, ...]
    consent_email: np.ndarray
    consent_push: np.ndarray
    channel_taste: np.ndarray  # (recipients x 2): open multiplier on email, push
    fatigue: np.ndarray        # open probability is multiplied by fatigue ** (messages in the last 7 days)
    interest: tuple[str, ...]  # the topic declared at sign-up (observable)
    conversion: np.ndarray     # P(conversion | click)
    first_name: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def recipient_rows(self) -> list[dict[str, Any]]:
        """Rows for ``kairos import recipients`` (and the store)."""
        return [{
            "id": rid, "email": f"{rid}@example.test", "timezone": self.zone[i], "locale": "en",
            "consent_email": bool(self.consent_email[i]), "consent_push": bool(self.consent_push[i]),
            "plan": self.plan[i], "first_name": self.first_name[i], "interest": self.interest[i],
        } for i, rid in enumerate(self.ids)]

    def click_probability(self, recipients: np.ndarray, item_topics: np.ndarray,
                          item_quality: np.ndarray) -> np.ndarray:
        """P(click | opened, recipient, item), for aligned index arrays (the hidden truth)."""
        taste = self.taste[recipients, item_topics]
        return click_chance(taste, self.engagement[recipients], item_quality)

    def open_probability(self, recipients: np.ndarray, local_hours: np.ndarray) -> np.ndarray:
        """P(open) falls off with the distance from the recipient's active hour."""
        return open_at_hour(local_hours, self.active_hour[recipients])


def open_at_hour(local_hours: np.ndarray, active_hours: np.ndarray) -> np.ndarray:
    """P(open) of a message sent at ``local_hours`` to someone active at ``active_hours``
    (broadcasting), before the recipient's channel taste, fatigue and the variant."""
    distance = np.abs(((local_hours - active_hours) + 12) % 24 - 12)
    return np.asarray(0.55 * np.exp(-distance / 3.0) + 0.05)


def click_chance(taste: np.ndarray, engagement: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """P(click | opened) of an item of that quality, for someone of that taste for its topic and
    that engagement (broadcasting): the hidden truth."""
    return np.asarray(np.clip(1.2 * taste * engagement * quality, 0.0, 0.95))


def favourite_topic(group: np.ndarray) -> np.ndarray:
    """The topic each group likes most (index into TOPICS): what most of its members declare."""
    return np.asarray((2 * group) % len(TOPICS))


def group_tastes(groups: int = len(GROUP_NAMES)) -> np.ndarray:
    """(groups x topics) the planted groups' tastes, unnormalized: group g likes topic 2g most and
    2g + 1 next (modulo the topics, so a fifth group likes what the first does)."""
    taste = np.full((groups, len(TOPICS)), 0.2)
    rows = np.arange(groups)
    taste[rows, favourite_topic(rows)] = 6.0
    taste[rows, (favourite_topic(rows) + 1) % len(TOPICS)] = 3.0
    return taste


def make_population(size: int, rng: np.random.Generator, *, groups: int = len(GROUP_NAMES),
                    consent_rate: float = 0.97, push_rate: float = 0.4) -> Population:
    """``size`` recipients in ``groups`` planted groups."""
    group_taste = group_tastes(groups)
    group = rng.integers(0, groups, size=size)
    taste = rng.dirichlet(np.ones(len(TOPICS)), size=size)  # replaced row-wise below (one draw per group)
    for g in range(groups):
        members = np.flatnonzero(group == g)
        taste[members] = rng.dirichlet(group_taste[g] * TASTE_CONCENTRATION, size=len(members))
    plan = np.where(rng.random(size) < 0.3, "pro", "free")
    engagement = rng.gamma(ENGAGEMENT_SHAPE, ENGAGEMENT_SCALE, size=size) * np.where(plan == "pro", PRO_ENGAGEMENT,
                                                                                     1.0)
    zones = rng.integers(0, len(ZONES), size=size)
    prefers_push = rng.random(size) < 0.35
    declared = np.where(rng.random(size) < DECLARED_TRUTHFULLY, favourite_topic(group),
                        rng.integers(0, len(TOPICS), size=size))
    channel_taste = np.column_stack([np.where(prefers_push, 0.6, 1.0), np.where(prefers_push, 1.4, 0.5)])
    return Population(
        ids=tuple(f"r{n:05d}" for n in range(size)),
        group=group,
        taste=taste,
        engagement=engagement,
        active_hour=rng.choice(np.array(ACTIVE_HOURS), size=size),
        zone=tuple(ZONES[z] for z in zones),
        plan=tuple(str(p) for p in plan),
        consent_email=rng.random(size) < consent_rate,
        consent_push=rng.random(size) < push_rate,
        channel_taste=channel_taste,
        fatigue=rng.uniform(0.75, 0.95, size=size),
        interest=tuple(TOPICS[t] for t in declared),
        conversion=rng.uniform(0.05, 0.25, size=size),
        first_name=tuple(FIRST_NAMES[i] for i in rng.integers(0, len(FIRST_NAMES), size=size)),
    )


@dataclass(frozen=True)
class Catalog:
    """A content pool with hidden quality."""

    pool: str
    ids: tuple[str, ...]
    topic: np.ndarray      # index into TOPICS
    quality: np.ndarray
    published_at: tuple[datetime, ...]

    def content_rows(self) -> list[dict[str, Any]]:
        return [{
            "id": iid, "pool": self.pool,
            "title": f"{TOPICS[self.topic[j]].capitalize()} story #{j + 1}",
            "url": f"https://news.example.test/{TOPICS[self.topic[j]]}/{j + 1}",
            "topic": TOPICS[self.topic[j]], "published_at": self.published_at[j],
            "attributes": {"reading_minutes": int(3 + (j * 7) % 12)},
        } for j, iid in enumerate(self.ids)]


def make_catalog(pool: str, size: int, now: datetime, rng: np.random.Generator, *,
                 published_before: timedelta = timedelta(0)) -> Catalog:
    """``size`` items spread over every topic, published over three days up to ``published_before``
    before ``now`` (set it to the history's length so every logged send had the whole catalog)."""
    topic = np.arange(size) % len(TOPICS)
    rng.shuffle(topic)
    ages = rng.uniform(0, 72, size=size)
    return Catalog(
        pool=pool,
        ids=tuple(f"{pool}-{j:03d}" for j in range(size)),
        topic=topic,
        quality=rng.uniform(0.6, 1.4, size=size),
        published_at=tuple(now - published_before - timedelta(hours=float(a)) for a in ages),
    )
