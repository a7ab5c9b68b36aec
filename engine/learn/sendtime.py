"""When each recipient's message goes out, in their local time, inside the campaign's window.

``fixed``: now, if it is inside the window (and outside quiet hours) where the recipient lives;
otherwise the next allowed minute. ``optimize``: the hour of the next 24 whose hour of the week
the recipient is most active in, estimated hierarchically so that a little history does not
decide alone:

- the population's hour-of-day profile (opens and clicks of everyone, by local hour, +1 each;
  with them, every event a recipient made outside any message — a visit, an app session, any
  custom event ingested without a campaign —, which shows when they are about, though not as
  closely as an unprompted open does: how far such *doings* fall from the hour their recipient
  reads mail at is learned from the recipients who do both (:func:`doing_offsets`), and each
  doing counts for the reading hours it may have come from (:func:`reading_hours`): a visit at
  14:00 in an audience that reads at 13:00 but never at 14:00 says 13:00);
- each recipient's hour-of-day profile, smoothed toward the population's with as many
  pseudo-events as fit the log best (a Dirichlet-multinomial posterior mean whose concentration
  is the empirical-Bayes estimate from the recipients with several reads of their own — opens
  and clicks on their own time; doings, which fall beside the hour now and then, would make the
  hours look wider than they are — or with several events of any kind where too few have several
  reads: few pseudo-events where people keep to their hours, many where they read whenever;
  :data:`DAY_PRIOR` when too few recipients have several); a recipient's doings count for the
  reading hours they may have come from by that recipient's own profile as well as by how far
  doings fall (:func:`own_reading_hours`), so that many visits around an hour say that hour,
  sharply;
- each recipient's hour-of-week profile, smoothed toward their own hour-of-day profile (spread
  over the seven days) with as many pseudo-events as fit the log best, estimated the same way
  from how the recipients with several events spread them over the days at their hours: many
  where people keep their hours whatever the day (one Monday visit an hour off their usual hour
  then says little of next Monday), few where their weekends differ from their weekdays
  (:data:`WEEK_PRIOR` when too few recipients have several);
- every message is a trial: sent at local hour h, it is answered right after the send (an
  open or a click within :data:`PROMPTED_SECONDS`: it was *prompted*), answered later (on the
  recipient's own time, before their next message) or not at all, with rates that depend on the
  distance between h and the recipient's own hour. Those rates by distance are learned from the
  log in two steps: first from the messages of everyone with some activity of their own, by
  distance from their most active hour (too high far from it: those recipients are there because
  they answered); then from every recipient's messages, by distance from each hour weighted by
  how likely it is theirs under the first rates (:class:`AnswerEvidence`). Each message
  multiplies the hour-of-day profile at hour a by the rate of what happened to it at
  distance(h, a): someone who never answers is tried at other hours than the ones that failed,
  and an answer right after a send at h says the recipient reads around h (as closely as the log
  shows prompted answers to be near the reader's own hour). Prompted opens count as their
  message's answer, not as activity at their hour (which would keep the send hour that found
  them an hour off their own forever).

Only hours inside the window and outside quiet hours are candidates; the one most likely to be
answered is chosen (:func:`expected_answers`): in the hour-of-week profile, an hour the
recipient was seen at counts at the answer rate of distance 0, and the hour-of-day profile it is
smoothed toward counts as each hour of the day the recipient may read at, weighted by how likely
it is, times the answer rate at its distance from the candidate (the rates by distance above).
Where the recipient's hour is known that is their hour; where it is not (someone who never
answered, whose hour is only known not to be the ones that failed), it is the middle of the hours
still likely rather than an edge of them, since a message an hour or two off is still often read.
With ``exploration`` e, e of the probability is spread evenly over every candidate. (An answer at
any hour shows the recipient's own hour — right after the send, or later at their hour — so the
hour most likely to be answered is also the one that teaches the most; the exploration share
keeps every hour's rate measured.) The probability is logged. A
staged test's held-back share is planned from ``start`` (``now`` + the wait) instead of ``now``.

Vectorized per time zone (few); the UTC offset of a zone is taken at ``now``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
from scipy.special import digamma
from sqlmodel import Session

from engine.features.events import load_events, own_doings
from engine.features.recipients import HOURS_OF_WEEK, event_offsets, hour_of_week, latest_sends, zone_offsets
from engine.learn.exploration import decayed_exploration
from engine.spec.model import CampaignSpec, Schedule

MODEL_VERSION = "hour-of-week-hierarchical-7"
HISTORY_DAYS = 90
DAY_PRIOR = 3.0    # pseudo-events of the population's hour-of-day profile, when the log cannot say
MIN_PROFILES = 30  # recipients with two or more events of their own needed to estimate it from the log
CONCENTRATIONS = np.geomspace(0.05, 200.0, 57)  # the candidates for it
WEEK_PRIOR = 2.0   # pseudo-events of the recipient's own hour-of-day profile, when the log cannot say
PROMPTED_SECONDS = 3600.0  # an open this soon after a send was prompted by it
SILENCE_PRIOR = 20.0  # pseudo-messages at the overall rate per distance of the answer rates
VARIATIONAL_STEPS = 20  # rounds of own_reading_hours, at most
VARIATIONAL_TOLERANCE = 1e-3  # it stops when no recipient's pseudo-count moves more than this
# Recipients worked on at once where each needs a (24 x 60) or (24 x 24) array: choosing looks at
# every minute of 24 candidate hours, own_reading_hours at every pair of hours.
CHOICE_CHUNK = 2048


@dataclass(frozen=True, slots=True)
class SendTime:
    at: datetime
    local_hour: int
    probability: float
    model: str


def allowed_minutes(schedule: Schedule) -> np.ndarray:
    """(1440,) True for each local minute of the day a message may go out."""
    minutes = np.arange(24 * 60)
    allowed = (minutes >= schedule.window[0]) & (minutes < schedule.window[1])
    if schedule.quiet_hours is not None:
        start, end = schedule.quiet_hours
        quiet = (minutes >= start) & (minutes < end) if start < end else (minutes >= start) | (minutes < end)
        allowed &= ~quiet
    return np.asarray(allowed)


@dataclass(frozen=True)
class Activity:
    """What the send-time model reads from the log, per recipient."""

    week_counts: np.ndarray   # (recipients x 168) opens and clicks by local hour of week
    sent: np.ndarray          # (recipients x 24) messages by local hour of day of the send
    answered: np.ndarray      # (recipients x 24) of those, the ones followed by an open or a click
    prompted: np.ndarray      # (recipients x 24) of those, the ones answered only right after the send
    doings: np.ndarray | None = None  # (recipients x 168) the part of week_counts outside any message


def circular_distance(hours: np.ndarray, other: np.ndarray) -> np.ndarray:
    return np.asarray(np.abs((hours - other + 12) % 24 - 12))


_DISTANCE = circular_distance(np.arange(24)[:, None], np.arange(24)[None, :])  # (hour h x hour a)
_AFTER = (np.arange(24)[:, None] - np.arange(24)[None, :]) % 24  # (hour h x hour a) hours from a to h


@dataclass(frozen=True)
class AnswerRates:
    """How often a message is answered, by the distance in hours (0..12) between its send hour
    and its recipient's most active hour of the day; index 13 is the rate of any message."""

    prompted: np.ndarray   # (14,) answered right after the send
    later: np.ndarray      # (14,) answered later, on the recipient's own time

    @property
    def answered(self) -> np.ndarray:
        return np.asarray(self.prompted + self.later)

    def by_distance(self, distance: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prompted, later, silent) rates at each of the hour ``distance``s (0..12)."""
        prompted, later = self.prompted[distance], self.later[distance]
        return prompted, later, np.asarray(np.clip(1.0 - prompted - later, 0.01, 1.0))


def answer_rates(activity: Activity) -> AnswerRates:
    """The prompted and later answer rates by distance (:func:`learn_prior`), each smoothed toward
    its overall rate."""
    rates = learn_prior(activity.week_counts, activity).rates
    assert rates is not None
    return rates


def _rising_logs(start: np.ndarray, limit: int) -> np.ndarray:
    """(len(start) x limit + 1) log(x (x + 1) ... (x + c - 1)) = log Gamma(x + c) - log Gamma(x)
    for each x of ``start`` and c = 0..limit."""
    steps = np.log(start[:, None] + np.arange(limit)[None, :])
    return np.asarray(np.hstack([np.zeros((len(start), 1)), np.cumsum(steps, axis=1)]))


def profile_concentration(by_hour: np.ndarray, population: np.ndarray) -> float:
    """How many pseudo-events of the ``population`` profile a recipient's own hour-of-day
    profile is smoothed with: the one (of :data:`CONCENTRATIONS`) under which the hour counts of
    the recipients with two or more events of their own are likeliest (Dirichlet-multinomial
    marginal likelihood; a single event says nothing about it)."""
    evidence = ProfileEvidence()
    evidence.add(by_hour)
    found = evidence.concentration(population)
    return found if found is not None else DAY_PRIOR


def _padded_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b`` over their last axis, the shorter one padded with zeros."""
    width = max(a.shape[-1], b.shape[-1])

    def padded(x: np.ndarray) -> np.ndarray:
        return np.pad(x, [*[(0, 0)] * (x.ndim - 1), (0, width - x.shape[-1])])

    return np.asarray(padded(a) + padded(b))


def doing_offsets(by_hour: np.ndarray, doings: np.ndarray) -> tuple[np.ndarray, int]:
    """Doings by how many hours after the recipient's reading hour they came (0..23, mod 24), over
    the recipients who both read (an open or a click on their own time) and do things outside any
    message, with their most frequent reading hour as theirs; and how many such recipients.

    :param by_hour: (recipients x 24) all their own events; :param doings: the part outside messages.
    """
    reads = np.maximum(by_hour - doings, 0.0)
    both = (reads.sum(axis=1) > 0) & (doings.sum(axis=1) > 0)
    if not both.any():
        return np.zeros(24), 0
    hour = reads[both].argmax(axis=1)
    after = np.take_along_axis(doings[both], (np.arange(24)[None, :] + hour[:, None]) % 24, axis=1)
    return np.asarray(after.sum(axis=0)), int(both.sum())


def reading_hours(doings_by_hour: np.ndarray, spread: np.ndarray, population: np.ndarray) -> np.ndarray:
    """(recipients x 24) each recipient's doings given to the hours they may read at: a doing at
    hour h counts for reading hour a in proportion to spread[h - a] x population[a]."""
    weight = spread[_AFTER] * population[None, :]  # (h x a)
    return np.asarray(doings_by_hour @ (weight / weight.sum(axis=1, keepdims=True)))


def own_reading_hours(reads: np.ndarray, doings: np.ndarray, spread: np.ndarray, pseudo: np.ndarray
                      ) -> np.ndarray:
    """(recipients x 24) each recipient's hour-of-day profile (the posterior mean) from their reads
    by hour, their doings by hour and ``pseudo`` events of everyone's profile, each doing counting
    for the reading hours it may have come from by how far doings fall from the hour
    (``spread``) *and* by that recipient's own profile.

    The profile and the doings' reading hours are found together, by mean-field variational
    Bayes for this Dirichlet-multinomial mixture (:data:`VARIATIONAL_STEPS` rounds): a doing at
    hour h counts for reading hour a in proportion to spread[h - a] x exp(E[log profile[a]]). So
    visits at 19:00 four times and at 18:00 and 20:00 once each say 19:00, and little else: the
    20:00 visit all but rules out 18:00 and the other way round. Split by everyone's profile
    instead (:func:`reading_hours`), the same visits leave 18:00 and 20:00 half as likely as
    19:00, and a silence or two at 19:00 tips the choice. A single visit at an hour nobody reads
    at still goes to the reading hour beside it: the expectation of the log of a profile share
    that only pseudo-events hold is very low.
    """
    kernel = spread[_AFTER]  # (doing hour h x reading hour a)
    base = reads + pseudo[None, :]
    alpha = base + reading_hours(doings, spread, pseudo / pseudo.sum())
    for rows in np.array_split(np.arange(len(alpha)), max(1, -(-len(alpha) // CHOICE_CHUNK))):
        # only the (recipient, hour) pairs with doings, a chunk of recipients at a time
        row, hour = np.nonzero(doings[rows])
        if len(row) == 0:
            continue
        count = doings[rows][row, hour][:, None]
        first = np.r_[True, row[1:] != row[:-1]]  # the first pair of each recipient (pairs come by row)
        starts = np.flatnonzero(first)
        with_doings = rows[row[starts]]
        owner = np.cumsum(first) - 1  # each pair's recipient, as an index into with_doings
        for _ in range(VARIATIONAL_STEPS):
            weight = kernel[hour] * np.exp(digamma(alpha[with_doings]))[owner]
            weight *= count / weight.sum(axis=1, keepdims=True)
            updated = base[with_doings] + np.add.reduceat(weight, starts, axis=0)
            moved = float(np.abs(updated - alpha[with_doings]).max())
            alpha[with_doings] = updated
            if moved < VARIATIONAL_TOLERANCE:
                break
    return np.asarray(alpha / alpha.sum(axis=1, keepdims=True))


def week_log_likelihoods(week_counts: np.ndarray) -> tuple[np.ndarray, int]:
    """For each of :data:`CONCENTRATIONS`, the log-likelihood of the hour-of-week counts of the
    recipients with two or more events, each a Dirichlet-multinomial around their own hour-of-day
    profile spread evenly over the seven days, with that many pseudo-events; and how many
    recipients it covers. Summed over chunks of an audience like the rest of :class:`HourEvidence`.

    Only the cells with events enter (the others cancel): log Gamma(a b + n) - log Gamma(a b) for
    a cell with share b of the profile and n events, minus log Gamma(a + N) - log Gamma(a) for the
    recipient's N events, each a sum of logs over the counts (:func:`_rising_logs`, unrolled).
    """
    counts = np.rint(week_counts[week_counts.sum(axis=1) >= 2]).astype(np.int64)
    if len(counts) == 0:
        return np.zeros(len(CONCENTRATIONS)), 0
    totals = counts.sum(axis=1)
    by_hour = counts.reshape(len(counts), 7, 24).sum(axis=1)
    row, cell = np.nonzero(counts)
    share = by_hour[row, cell % 24] / totals[row] / 7.0
    n = counts[row, cell]
    # every event of a cell once, numbered 0..n-1 within it; every event of a recipient the same
    share_of_event = np.repeat(share, n)
    in_cell = np.arange(len(share_of_event)) - np.repeat(np.cumsum(n) - n, n)
    in_recipient = np.arange(int(totals.sum())) - np.repeat(np.cumsum(totals) - totals, totals)
    likelihood = np.array([np.log(a * share_of_event + in_cell).sum() - np.log(a + in_recipient).sum()
                           for a in CONCENTRATIONS])
    return likelihood, len(counts)


@dataclass(frozen=True)
class HourPrior:
    """What the send-time model learns from everyone before it looks at anyone: the population's
    hour-of-day profile, how many pseudo-events of it a recipient's profile is smoothed with, the
    answer rates by distance (None without sends in the log), the messages in the log, and how
    many pseudo-events of a recipient's hour-of-day profile their hour-of-week one is smoothed with."""

    population: np.ndarray  # (24,)
    concentration: float
    rates: AnswerRates | None
    sent: float
    week_concentration: float = WEEK_PRIOR
    spread: np.ndarray | None = None  # (24,) how far a doing falls from the reading hour (HourEvidence.spread)


@dataclass
class AnswerEvidence:
    """The sums behind the answer rates by distance: messages by the distance of their send hour
    from their recipient's own hour, and of those the ones answered right after the send or later,
    with each recipient's own hour given as a weight over the 24 hours. Added up a chunk at a time,
    like :class:`HourEvidence`.

    The first estimate (:class:`HourEvidence`) puts the weight on the most active hour of the
    recipients who have one, and they have one mostly because they answered: someone sent messages
    far from their hour who never answered is left out, with all their silences, and the rates far
    from the hour come out too high. The second (:func:`learn_prior`) spreads every recipient's
    weight by how likely each hour is theirs under the first rates (:func:`day_preferences`): one
    step of expectation-maximization; on the simulated log a second step moves the rates by less
    than 0.01."""

    sent_by_distance: np.ndarray = field(default_factory=lambda: np.zeros(13))
    prompted_by_distance: np.ndarray = field(default_factory=lambda: np.zeros(13))
    later_by_distance: np.ndarray = field(default_factory=lambda: np.zeros(13))
    sent: float = 0.0
    prompted: float = 0.0
    later: float = 0.0

    def add(self, activity: Activity, own_hour: np.ndarray) -> None:
        """:param own_hour: (recipients x 24) the weight of each hour as the recipient's own."""
        later = np.maximum(activity.answered - activity.prompted, 0.0)

        def by_distance(counts: np.ndarray) -> np.ndarray:
            # messages at send hour h times the weight of hour a, summed by distance(h, a)
            return np.bincount(_DISTANCE.ravel(), weights=(counts.T @ own_hour).ravel(), minlength=13)

        self.sent_by_distance = self.sent_by_distance + by_distance(activity.sent)
        self.prompted_by_distance = self.prompted_by_distance + by_distance(activity.prompted)
        self.later_by_distance = self.later_by_distance + by_distance(later)
        self.sent += float(activity.sent.sum())
        self.prompted += float(activity.prompted.sum())
        self.later += float(later.sum())

    def rates(self) -> AnswerRates | None:
        """Each rate by distance smoothed toward its overall rate; None without messages."""
        if self.sent <= 0:
            return None
        total = self.sent + 2.0

        def rate(by_distance: np.ndarray, count: float) -> np.ndarray:
            overall = (count + 1.0) / total
            return np.asarray(np.r_[(by_distance + SILENCE_PRIOR * overall)
                                    / (self.sent_by_distance + SILENCE_PRIOR), overall])

        prompted = rate(self.prompted_by_distance, self.prompted)
        answered_later = rate(self.later_by_distance, self.later)
        # Together they are a probability: scale both down where their sum would reach 0.95.
        scale = np.minimum(1.0, 0.95 / np.maximum(prompted + answered_later, 1e-12))
        return AnswerRates(prompted * scale, answered_later * scale)


@dataclass
class ProfileEvidence:
    """The hour-of-day profiles of the recipients with two or more events, as the sums their
    Dirichlet-multinomial likelihood needs: how many have each count at each hour, and each total.
    Added up a chunk at a time, like :class:`HourEvidence`."""

    at_hour: np.ndarray = field(default_factory=lambda: np.zeros((24, 1), dtype=np.int64))
    with_total: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    profiles: int = 0

    def add(self, by_hour: np.ndarray) -> None:
        counts = np.rint(by_hour[by_hour.sum(axis=1) >= 2]).astype(np.int64)
        if len(counts) == 0:
            return
        totals = counts.sum(axis=1)
        limit = int(totals.max())
        at_hour = np.bincount((np.arange(24)[None, :] * (limit + 1) + counts).ravel(),
                              minlength=24 * (limit + 1)).reshape(24, limit + 1)
        self.at_hour = _padded_sum(self.at_hour, at_hour)
        self.with_total = _padded_sum(self.with_total, np.bincount(totals, minlength=limit + 1))
        self.profiles += len(counts)

    def concentration(self, population: np.ndarray) -> float | None:
        """The one of :data:`CONCENTRATIONS` under which these profiles are likeliest; None with
        fewer than :data:`MIN_PROFILES` of them."""
        if self.profiles < MIN_PROFILES:
            return None
        limit = len(self.with_total) - 1
        likelihood = [float((self.at_hour * _rising_logs(a * population, limit)).sum()
                            - (self.with_total * _rising_logs(np.array([a]), limit)[0]).sum())
                      for a in CONCENTRATIONS]
        return float(CONCENTRATIONS[int(np.argmax(likelihood))])


@dataclass
class HourEvidence:
    """The sums behind :class:`HourPrior`, added up over an audience a chunk at a time: every
    statistic the prior reads from the whole audience is a sum over its recipients, so a large
    audience is read in chunks and gives the same prior as read at once."""

    by_hour: np.ndarray = field(default_factory=lambda: np.zeros(24))
    # how peaked one recipient's hours are: from their reads (opens and clicks on their own time)
    # where enough recipients have several, else from all their events. Doings fall beside the
    # reading hour now and then, so a profile of reads and doings looks wider than the reading
    # hours are, and would smooth each recipient's toward everyone's too much.
    reads: ProfileEvidence = field(default_factory=ProfileEvidence)
    events: ProfileEvidence = field(default_factory=ProfileEvidence)
    # the answer rates' first estimate: each recipient's own hour is their most active one (none
    # without activity of their own)
    answers: AnswerEvidence = field(default_factory=AnswerEvidence)
    # how the recipients with two or more events spread them over the days (week_log_likelihoods)
    week_likelihood: np.ndarray = field(default_factory=lambda: np.zeros(len(CONCENTRATIONS)))
    week_profiles: int = 0
    # doings by their distance from the hour the recipient reads at (doing_offsets), and by hour
    doing_offsets: np.ndarray = field(default_factory=lambda: np.zeros(24))
    readers_doing: int = 0
    doings_by_hour: np.ndarray = field(default_factory=lambda: np.zeros(24))

    @classmethod
    def of(cls, week_counts: np.ndarray, activity: Activity | None = None) -> HourEvidence:
        evidence = cls()
        evidence.add(week_counts, activity)
        return evidence

    def add(self, week_counts: np.ndarray, activity: Activity | None = None) -> None:
        """Add the recipients of one chunk: their opens and clicks by local hour of week, and what
        the log says of the messages sent to them."""
        by_hour = week_counts.reshape(len(week_counts), 7, 24).sum(axis=1)
        self.by_hour = self.by_hour + by_hour.sum(axis=0)
        self.events.add(by_hour)
        likelihood, profiles = week_log_likelihoods(week_counts)
        self.week_likelihood = self.week_likelihood + likelihood
        self.week_profiles += profiles
        doings = None
        if activity is not None and activity.doings is not None:
            doings = activity.doings.reshape(len(week_counts), 7, 24).sum(axis=1)
        self.reads.add(by_hour - doings if doings is not None else by_hour)
        if activity is None:
            return
        if doings is not None:
            offsets, readers = doing_offsets(by_hour, doings)
            self.doing_offsets = self.doing_offsets + offsets
            self.readers_doing += readers
            self.doings_by_hour = self.doings_by_hour + doings.sum(axis=0)
        active = np.flatnonzero(by_hour.sum(axis=1) > 0)
        most_active = np.zeros_like(by_hour)
        most_active[active, by_hour[active].argmax(axis=1)] = 1.0
        self.answers.add(activity, most_active)

    def concentration(self, population: np.ndarray) -> float:
        for profiles in (self.reads, self.events):
            found = profiles.concentration(population)
            if found is not None:
                return found
        return DAY_PRIOR

    def week_concentration(self) -> float:
        if self.week_profiles < MIN_PROFILES:
            return WEEK_PRIOR
        return float(CONCENTRATIONS[int(np.argmax(self.week_likelihood))])

    def spread(self) -> np.ndarray | None:
        """P(a doing falls d hours after the reading hour), d = 0..23 (23: an hour before), each
        distance smoothed with one pseudo-doing; None with too few readers who also do things."""
        if self.readers_doing < MIN_PROFILES:
            return None
        return np.asarray((self.doing_offsets + 1.0) / (self.doing_offsets.sum() + 24.0))

    def prior(self) -> HourPrior:
        spread = self.spread()
        by_hour = self.by_hour
        if spread is not None:  # everyone's doings given to the hours they read at, as each one's are
            reads = np.maximum(by_hour - self.doings_by_hour, 0.0)
            readers = (reads + 1.0) / (reads + 1.0).sum()
            by_hour = reads + reading_hours(self.doings_by_hour[None, :], spread, readers)[0]
        population = by_hour + 1.0
        population /= population.sum()
        return HourPrior(population, self.concentration(population), self.answers.rates(), self.answers.sent,
                         self.week_concentration(), spread)


def learn_prior(week_counts: np.ndarray, activity: Activity | None = None) -> HourPrior:
    """What the model learns from these recipients as the whole audience (:func:`_prior_of`)."""
    if activity is None:
        return HourEvidence.of(week_counts).prior()
    return _prior_of(lambda: [activity])


def _prior_of(activities: Callable[[], Iterable[Activity]]) -> HourPrior:
    """:class:`HourEvidence` summed over ``activities()``, then (given messages in the log) the
    answer rates of :class:`AnswerEvidence`, summed over a second pass: an audience read one chunk
    at a time gives the same prior as read at once."""
    evidence = HourEvidence()
    for activity in activities():
        evidence.add(activity.week_counts, activity)
    first = evidence.prior()
    if first.rates is None:
        return first
    answers = AnswerEvidence()
    for activity in activities():
        answers.add(activity, day_preferences(activity.week_counts, activity, first))
    return replace(first, rates=answers.rates())


def day_preferences(week_counts: np.ndarray, activity: Activity | None = None,
                    prior: HourPrior | None = None) -> np.ndarray:
    """(recipients x 24) how likely each local hour of the day is the one the recipient reads at,
    from opens and clicks by local hour, and (given the log's sends) the evidence of each
    message's answer: none, right after the send, or later.

    :param prior: what was learned from the whole audience (default: from these recipients).
    """
    n = len(week_counts)
    prior = prior if prior is not None else learn_prior(week_counts, activity)
    by_hour = week_counts.reshape(n, 7, 24).sum(axis=1)
    population = prior.population
    own_day = (by_hour + prior.concentration * population) / (by_hour.sum(axis=1, keepdims=True)
                                                              + prior.concentration)
    if prior.spread is not None and activity is not None and activity.doings is not None:
        # a doing is not always at the reading hour: it counts for the hours it may have come from
        doings = activity.doings.reshape(n, 7, 24).sum(axis=1)
        did = np.flatnonzero(doings.sum(axis=1) > 0)
        own_day[did] = own_reading_hours(by_hour[did] - doings[did], doings[did], prior.spread,
                                         prior.concentration * population)
    if activity is not None and prior.rates is not None and activity.sent.sum() > 0:
        prompted, later, silent = prior.rates.by_distance(_DISTANCE)   # (send hour h x own hour a)
        # log P(what happened to the messages | own hour a), summed over the recipient's messages.
        silences = np.maximum(activity.sent - activity.answered, 0.0)
        answered_later = np.maximum(activity.answered - activity.prompted, 0.0)
        log_likelihood = (silences @ np.log(silent) + activity.prompted @ np.log(prompted)
                          + answered_later @ np.log(later))
        own_day = own_day * np.exp(log_likelihood - log_likelihood.max(axis=1, keepdims=True))
        own_day /= own_day.sum(axis=1, keepdims=True)
    return np.asarray(own_day)


def hour_preferences(week_counts: np.ndarray, activity: Activity | None = None,
                     prior: HourPrior | None = None) -> np.ndarray:
    """(recipients x 168) smoothed hour-of-week preference (where the recipient reads): their
    opens and clicks by local hour of week, smoothed toward :func:`day_preferences` spread over
    the seven days.

    :param prior: what was learned from the whole audience (default: from these recipients).
    """
    prior = prior if prior is not None else learn_prior(week_counts, activity)
    return week_preferences(week_counts, day_preferences(week_counts, activity, prior), prior.week_concentration)


def week_preferences(week_counts: np.ndarray, day: np.ndarray, week_prior: float = WEEK_PRIOR) -> np.ndarray:
    """:func:`hour_preferences` from the :func:`day_preferences` ``day``, with ``week_prior``
    pseudo-events of it (:attr:`HourPrior.week_concentration`)."""
    prior_week = np.tile(day, 7) / 7.0
    return np.asarray((week_counts + week_prior * prior_week) / (week_counts.sum(axis=1, keepdims=True) + week_prior))


def expected_answers(week_counts: np.ndarray, day: np.ndarray, rates: AnswerRates,
                     week_prior: float = WEEK_PRIOR) -> np.ndarray:
    """(recipients x 168) how likely a message sent at each hour of the week is answered: the
    :func:`hour_preferences` with each part valued by what it says of an answer there.

    :param week_counts: (recipients x 168) the recipient's own events by local hour of the week.
    :param day: (recipients x 24) their :func:`day_preferences`.
    :param week_prior: pseudo-events of ``day`` per recipient (:attr:`HourPrior.week_concentration`).

    An hour of the week the recipient was seen at counts as reading then: a message there is
    answered at distance 0's rate. The hour-of-day profile they are smoothed toward counts by the
    chance that they read at each hour of the day times the answer rate at its distance from the
    candidate: where the hour is known that is the hour itself; where it is not, the middle of the
    likely hours is worth more than an edge of them.
    """
    expected_day = day @ rates.answered[_DISTANCE]
    return np.asarray((week_counts * rates.answered[0] + week_prior * np.tile(expected_day, 7) / 7.0)
                      / (week_counts.sum(axis=1, keepdims=True) + week_prior))


def activity_by_hour_of_week(session: Session, recipient_ids: Sequence[str], zones: Sequence[str],
                             now: datetime) -> Activity:
    """Opens and clicks of the last 90 days by local hour of the week (with the recipient's events
    outside any campaign: visits, app sessions, custom events), and messages by local hour of the
    send and whether an open or a click followed (before the recipient's next message)."""
    events = load_events(session, recipient_ids, now - timedelta(days=HISTORY_DAYS), now)
    n = len(recipient_ids)
    log = events.select(events.recipient >= 0)
    local = log.ts + event_offsets(zones, log.recipient, log.ts)
    engaged = log.is_kind("open", "click")
    starts = log.is_kind("sent") & (log.position <= 0)
    # An open within the hour after a send says the send found them, not when they read on their
    # own: it counts through its message's answer below, not as activity at that hour.
    sends = latest_sends(log, starts, engaged)
    rows = np.flatnonzero(engaged)
    prompted = (sends >= 0) & (log.ts[rows] - log.ts[sends.clip(0)] < PROMPTED_SECONDS)
    # So do the recipient's doings outside any message (a conversion credited to a campaign
    # followed its click, and counts through it).
    doing = np.flatnonzero(own_doings(log))
    own = np.concatenate([rows[~prompted], doing])
    counts = np.zeros((n, HOURS_OF_WEEK))
    np.add.at(counts, (log.recipient[own], hour_of_week(local[own])), 1.0)
    doings = np.zeros((n, HOURS_OF_WEEK))
    np.add.at(doings, (log.recipient[doing], hour_of_week(local[doing])), 1.0)
    answered = np.isin(log.message, log.message[np.unique(sends[sends >= 0])]) & starts
    # A message answered later, on the recipient's own time, already speaks through that hour.
    answered_later = np.isin(log.message, log.message[np.unique(sends[(sends >= 0) & ~prompted])]) & starts
    hour = (np.floor(local / 3600.0).astype(np.int64)) % 24
    sent = np.zeros((n, 24))
    replied = np.zeros((n, 24))
    prompt = np.zeros((n, 24))
    np.add.at(sent, (log.recipient[starts], hour[starts]), 1.0)
    np.add.at(replied, (log.recipient[answered], hour[answered]), 1.0)
    just_prompted = answered & ~answered_later
    np.add.at(prompt, (log.recipient[just_prompted], hour[just_prompted]), 1.0)
    return Activity(counts, sent, replied, prompt, doings)


def choose_send_times(preference: np.ndarray | None, offsets: np.ndarray, schedule: Schedule, start: float,
                      exploration: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(epoch seconds, probability) per recipient: the send instant at or after ``start``.

    :param preference: (recipients x 168) hour-of-week preference (the best allowed hour is
        chosen, with ``exploration``), or None for ``fixed``.
    :param offsets: each recipient's UTC offset in seconds.
    """
    n = len(offsets)
    allowed = allowed_minutes(schedule)
    # The candidate hours depend on the UTC offset alone: worked out once per offset (few), then
    # spread over the recipients.
    distinct_offsets, of_zone = np.unique(offsets, return_inverse=True)
    local_start = start + distinct_offsets
    # Candidate k is local hour floor(start) + k, from its first allowed minute (the current hour
    # from now): 24 candidates cover every hour of the day once.
    zone_hour_start = np.floor(local_start / 3600.0)[:, None] * 3600.0 + np.arange(24)[None, :] * 3600.0
    begin = np.maximum(zone_hour_start, local_start[:, None])
    offset_in_hour = ((begin - zone_hour_start) // 60).astype(np.int64)
    hour_allowed = allowed.reshape(24, 60)
    hour_of_day = ((zone_hour_start // 3600) % 24).astype(np.int64)
    # The first allowed minute of each candidate hour at or after ``begin``, if any.
    open_minutes = hour_allowed[hour_of_day] & (np.arange(60)[None, None, :] >= offset_in_hour[:, :, None])
    has_minute = np.asarray(open_minutes.any(axis=2))[of_zone]
    zone_local_at = zone_hour_start + open_minutes.argmax(axis=2) * 60.0
    if preference is None:
        chosen = has_minute.argmax(axis=1)
        probability = np.ones(n)
    else:
        week_hour = (((zone_hour_start // 3600).astype(np.int64) + 72) % HOURS_OF_WEEK)[of_zone]
        value = np.where(has_minute, np.take_along_axis(preference, week_hour, axis=1), -np.inf)
        count = np.maximum(has_minute.sum(axis=1, keepdims=True), 1)
        best = np.zeros((n, 24))
        best[np.arange(n), value.argmax(axis=1)] = 1.0
        distribution = (1.0 - exploration) * best + exploration * has_minute / count
        cumulative = np.cumsum(distribution, axis=1)
        u = rng.random(n) * cumulative[:, -1]
        chosen = np.minimum((cumulative <= u[:, None]).sum(axis=1), 23)
        chosen = np.where(has_minute[np.arange(n), chosen], chosen, distribution.argmax(axis=1))
        probability = distribution[np.arange(n), chosen]
    rows = np.arange(n)
    at = np.where(has_minute[rows, chosen], zone_local_at[of_zone, chosen] - offsets, start)
    return np.maximum(at, start), probability


def plan_send_times(session: Session, schedule: Schedule, recipient_ids: Sequence[str], zones: Sequence[str],
                    now: datetime, *, exploration: float = 0.0, rng: np.random.Generator | None = None,
                    delayed: np.ndarray | None = None, delay: timedelta = timedelta(0),
                    exploration_decay: int | None = None, prior: HourPrior | None = None) -> list[SendTime]:
    """One :class:`SendTime` per recipient (aligned with ``recipient_ids``).

    :param delayed: recipients planned from ``now + delay`` rather than ``now`` (a staged test's
        held-back share).
    :param exploration_decay: shrink ``exploration`` with the messages in the audience's log (see
        :func:`engine.learn.exploration.decayed_exploration`).
    :param prior: what the model learned from the whole audience, when these recipients are one
        chunk of it (:func:`hour_prior`); by default, from these recipients.
    """
    count = len(recipient_ids)
    if count == 0:
        return []
    rng = rng if rng is not None else np.random.default_rng(int(now.timestamp()))
    zone_names = _zone_names(schedule, zones)
    offsets = zone_offsets(zone_names, now)
    optimize = schedule.send_time == "optimize"
    preference: np.ndarray | None = None
    if optimize:
        activity = activity_by_hour_of_week(session, recipient_ids, zone_names, now)
        prior = prior if prior is not None else learn_prior(activity.week_counts, activity)
        day = day_preferences(activity.week_counts, activity, prior)
        preference = (expected_answers(activity.week_counts, day, prior.rates, prior.week_concentration)
                      if prior.rates is not None else week_preferences(activity.week_counts, day,
                                                                      prior.week_concentration))
        exploration = decayed_exploration(exploration, prior.sent, exploration_decay)
    start = np.full(count, now.timestamp())
    if delayed is not None:
        start = np.where(delayed, start + delay.total_seconds(), start)
    at = np.zeros(count)
    probability = np.ones(count)
    for begin in np.unique(start):
        # in chunks: choosing looks at every minute of 24 candidate hours per recipient, and a
        # (recipients x 24 x 60) array for a whole audience would grow memory with it
        same_start = np.flatnonzero(start == begin)
        for rows in np.array_split(same_start, max(1, -(-len(same_start) // CHOICE_CHUNK))):
            at[rows], probability[rows] = choose_send_times(
                preference[rows] if preference is not None else None, offsets[rows], schedule, float(begin),
                exploration if optimize else 0.0, rng)
    local_hour = (((at + offsets) // 3600) % 24).astype(int)
    model = MODEL_VERSION if optimize else "fixed"
    # Recipients of one time zone often share their instant and hour: one SendTime for them all.
    made: dict[tuple[float, int, float], SendTime] = {}
    times = []
    for key in zip(at.tolist(), local_hour.tolist(), probability.tolist(), strict=True):
        found = made.get(key)
        if found is None:
            found = made[key] = SendTime(at=datetime.fromtimestamp(key[0], UTC), local_hour=key[1],
                                         probability=key[2], model=model)
        times.append(found)
    return times


def _zone_names(schedule: Schedule, zones: Sequence[str]) -> list[str]:
    return [z if schedule.timezone == "recipient" else schedule.timezone for z in zones]


def hour_prior(session: Session, schedule: Schedule,
               chunks: Callable[[], Iterable[tuple[Sequence[str], Sequence[str]]]], now: datetime) -> HourPrior:
    """The prior of an audience read a chunk at a time, the same as :func:`learn_prior` of the
    whole: ``chunks()`` yields (recipient ids, zones). The answer rates' second estimate needs the
    first, so the audience is read twice when the log has messages."""
    def activities() -> Iterator[Activity]:
        for recipient_ids, zones in chunks():
            if len(recipient_ids):
                yield activity_by_hour_of_week(session, recipient_ids, _zone_names(schedule, zones), now)

    return _prior_of(activities)


class CampaignSendTimes:
    """Send times for a run of ``spec``: its schedule, its exploration, and its staged test (if any:
    a random ``explore`` share is planned from now, the rest from now + ``wait``), for one chunk of
    its audience after another.

    :param prior: what was learned from the whole audience (:func:`hour_prior`); None: each call
        learns it from the recipients it is given (the whole audience in one call).
    """

    def __init__(self, session: Session, spec: CampaignSpec, now: datetime, rng: np.random.Generator | None = None,
                 prior: HourPrior | None = None) -> None:
        self.session, self.spec, self.prior = session, spec, prior
        self.rng = rng if rng is not None else np.random.default_rng(
            int.from_bytes(spec.name.encode()[:8], "big") ^ int(now.timestamp()))

    def plan(self, recipient_ids: Sequence[str], zones: Sequence[str], start: datetime) -> list[SendTime]:
        spec = self.spec
        staged = spec.optimize.staged
        delayed = self.rng.random(len(recipient_ids)) >= staged.explore if staged is not None else None
        return plan_send_times(self.session, spec.schedule, recipient_ids, zones, start,
                               exploration=spec.optimize.exploration, rng=self.rng, delayed=delayed,
                               delay=staged.wait if staged is not None else timedelta(0),
                               exploration_decay=spec.optimize.exploration_decay, prior=self.prior)


def plan_campaign_send_times(session: Session, spec: CampaignSpec, recipient_ids: Sequence[str],
                             zones: Sequence[str], now: datetime, rng: np.random.Generator | None = None
                             ) -> list[SendTime]:
    """Send times for a run of ``spec`` whose whole audience is ``recipient_ids`` (see
    :class:`CampaignSendTimes`)."""
    return CampaignSendTimes(session, spec, now, rng).plan(recipient_ids, zones, now)


__all__ = ["Activity", "AnswerEvidence", "AnswerRates", "CampaignSendTimes", "HourEvidence", "HourPrior", "SendTime",
           "allowed_minutes", "answer_rates", "choose_send_times", "day_preferences", "expected_answers",
           "hour_preferences", "hour_prior", "learn_prior", "plan_campaign_send_times", "plan_send_times",
           "week_preferences"]
