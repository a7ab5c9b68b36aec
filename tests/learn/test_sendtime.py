"""Send times land on the planted active hours, inside the window and outside quiet hours."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from engine.features.attributes import AttributeEncoding
from engine.features.events import EventColumns
from engine.features.recipients import recipient_features, zone_offsets
from engine.learn import sendtime
from engine.learn.sendtime import (
    Activity,
    AnswerRates,
    HourEvidence,
    activity_by_hour_of_week,
    allowed_minutes,
    answer_rates,
    choose_send_times,
    circular_distance,
    expected_answers,
    hour_preferences,
    profile_concentration,
    week_preferences,
)
from engine.sim import seed_store
from engine.spec.model import Schedule
from engine.store import Event, Store
from tests.learn.simworld import small_world


def local_hours(at: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return np.asarray(((at + offsets) // 3600) % 24).astype(int)


def test_send_times_land_on_the_planted_active_hours() -> None:
    world = small_world(size=2000, weeks=8, seed=5)
    population = world.population
    events = EventColumns.from_columns(world.history.columns, list(population.ids))
    features = recipient_features(events, population.zone, [{}] * len(population), AttributeEncoding(), world.start)
    schedule = Schedule(window=(7 * 60, 22 * 60), send_time="optimize")
    offsets = zone_offsets(population.zone, world.start)
    at, probability = choose_send_times(hour_preferences(features.hour_of_week), offsets, schedule,
                                        world.start.timestamp(), 0.05, np.random.default_rng(1))
    hours = local_hours(at, offsets)
    engaged = features.hour_of_week.sum(axis=1)
    seen = engaged >= 2
    assert seen.mean() > 0.3
    # Planted hours are recovered for recipients with history (the simulator records an open that
    # comes within an hour of a send at the send's hour, hence the one-hour tolerance); the
    # recipients without any history are spread over hours, not all guessed at once.
    assert np.mean(hours[seen] == population.active_hour[seen]) > 0.75
    assert np.mean(np.abs(hours[seen] - population.active_hour[seen]) <= 1) > 0.9
    assert len(np.unique(hours[engaged == 0])) >= 6
    assert np.all((probability > 0) & (probability <= 1))
    assert np.all(at >= world.start.timestamp())
    assert np.all(at < world.start.timestamp() + 86400)


def test_window_and_quiet_hours_are_respected_and_fixed_goes_at_the_next_opening() -> None:
    now = datetime(2026, 11, 2, 6, 30, tzinfo=UTC)
    zones = ["Europe/Madrid", "America/New_York", "Asia/Tokyo", "UTC"] * 50
    offsets = zone_offsets(zones, now)
    schedule = Schedule(window=(8 * 60, 21 * 60), send_time="optimize", quiet_hours=(12 * 60, 14 * 60))
    rng = np.random.default_rng(3)
    preference = hour_preferences(rng.poisson(0.3, size=(len(zones), 168)).astype(float))
    at, _ = choose_send_times(preference, offsets, schedule, now.timestamp(), 0.5, rng)
    minutes = ((at + offsets) // 60) % 1440
    assert allowed_minutes(schedule)[minutes.astype(int)].all()
    fixed = Schedule(window=(8 * 60, 21 * 60))
    at, probability = choose_send_times(None, offsets, fixed, now.timestamp(), 0.0, rng)
    local = [datetime.fromtimestamp(t, UTC) + timedelta(seconds=o) for t, o in zip(at, offsets, strict=True)]
    # Madrid 07:30 and UTC 06:30 wait for 08:00; New York's 01:30 waits too; Tokyo 15:30 goes now.
    assert [(d.hour, d.minute) for d in local[:4]] == [(8, 0), (8, 0), (15, 30), (8, 0)]
    assert np.all(probability == 1.0)


def test_unanswered_sends_move_the_hour_and_prompted_opens_are_not_activity(tmp_path: Path) -> None:
    """r0 read at 19:00 on their own after 08:00 sends; r1 opened only right after 12:00 sends; r2
    never answered 19:00 sends; the rest (the population) read at 19:00 on their own, answer a
    19:00 send at once and leave a 07:00 one unanswered."""
    store = Store.open(f"sqlite:///{tmp_path / 'k.db'}")
    t0 = datetime(2026, 10, 5, 0, tzinfo=UTC)  # a Monday; every recipient lives in UTC
    events: list[Event] = []

    def send(rid: str, day: int, hour: int, open_after: timedelta | None) -> None:
        at = t0 + timedelta(days=day, hours=hour)
        events.append(Event(id=f"s-{rid}-{day}", recipient_id=rid, type="sent", ts=at, position=0, item_id="i",
                            message_id=len(events) + 1))
        if open_after is not None:
            events.append(Event(id=f"o-{rid}-{day}", recipient_id=rid, type="open", ts=at + open_after))

    ids = [f"r{n}" for n in range(60)]
    for day in (0, 7):
        send("r0", day, 8, timedelta(hours=11))
        send("r1", day, 12, timedelta(minutes=5))
        send("r2", day, 19, None)
        for rid in ids[3:]:
            send(rid, day, 17 if day == 0 else 19, timedelta(hours=2) if day == 0 else timedelta(minutes=5))
    for rid in ids[3:]:
        send(rid, 10, 7, None)
    with store.session() as session:
        session.add_all(events)
    with store.session() as session:
        activity = activity_by_hour_of_week(session, ids, ["UTC"] * len(ids), t0 + timedelta(days=14))
    by_hour = activity.week_counts.reshape(len(ids), 7, 24).sum(axis=1)
    assert by_hour[0, 19] == 2 and by_hour[1].sum() == 0  # r1's opens were prompted by the sends
    assert by_hour[3, 19] == 1  # the population's own reading hour; its prompted 19:00 opens are answers
    np.testing.assert_array_equal(activity.sent[:3, [8, 12, 19]], [[2, 0, 0], [0, 2, 0], [0, 0, 2]])
    np.testing.assert_array_equal(activity.prompted[:4, [12, 19]], [[0, 0], [2, 0], [0, 0], [0, 1]])
    np.testing.assert_array_equal(activity.answered[:3].sum(axis=1), [2, 2, 0])
    day = hour_preferences(activity.week_counts, activity).reshape(len(ids), 7, 24).sum(axis=1)
    without = hour_preferences(activity.week_counts).reshape(len(ids), 7, 24).sum(axis=1)
    assert day[0].argmax() == without[0].argmax() == 19
    # Messages sent at someone's own hour are answered far more often: answers at 12:00 raise 12:00,
    # and two unanswered 19:00 sends make 19:00, everyone's hour, unlikely to be r2's.
    assert day[1, 12] > 1.5 * without[1, 12]
    assert without[2].argmax() == 19 and day[2, 19] < 0.2 * without[2, 19] and day[2].argmax() != 19


def test_an_answer_right_after_a_send_pins_the_hour_as_closely_as_the_log_shows() -> None:
    """Everyone else reads at 08:00 or 19:00 and answers a send within an hour of their own hour at
    once, one 2 to 5 hours away later on their own time, and no other; the last recipient never
    read on their own but answered two 12:00 sends at once and left a 19:00 one unanswered."""
    n = 301
    own = np.r_[np.where(np.arange(n - 1) % 2 == 0, 8, 19), -1]
    week_counts = np.zeros((n, 168))
    week_counts[np.arange(n - 1), own[:-1]] = 1.0   # one own open each, on Monday
    hours = np.arange(24)
    distance = np.abs((hours[None, :] - own[:-1, None] + 12) % 24 - 12)
    sent = np.zeros((n, 24))
    sent[:-1, 7:22] = 1.0
    prompted = np.where(distance <= 1, sent[:-1], 0.0)
    later = np.where((distance >= 2) & (distance <= 5), sent[:-1], 0.0)
    answered = np.vstack([prompted + later, np.zeros(24)])
    prompted = np.vstack([prompted, np.zeros(24)])
    sent[-1, 12], sent[-1, 19] = 2.0, 1.0
    answered[-1, 12] = prompted[-1, 12] = 2.0
    activity = Activity(week_counts, sent, answered, prompted)
    rates = answer_rates(activity)
    assert rates.prompted[:2].min() > 0.8 and rates.prompted[2:13].max() < 0.05
    assert rates.later[2:6].min() > 0.8 and rates.later[:2].max() < 0.05
    day = hour_preferences(week_counts, activity).reshape(n, 7, 24).sum(axis=1)
    # Everyone's hours are 08:00 and 19:00, but prompted answers only come from an hour away at most.
    assert day[-1, 11:14].sum() > 0.9 and day[-1].argmax() in (11, 12, 13)
    offsets = np.zeros(n)
    at, probability = choose_send_times(hour_preferences(week_counts, activity), offsets,
                                        Schedule(window=(7 * 60, 22 * 60), send_time="optimize"),
                                        datetime(2026, 11, 2, 5, tzinfo=UTC).timestamp(), 0.0,
                                        np.random.default_rng(0))
    assert local_hours(at, offsets)[-1] in (11, 12, 13) and probability[-1] == 1.0
    assert np.array_equal(local_hours(at, offsets)[:-1], own[:-1])


def test_answer_rates_count_the_silences_of_recipients_who_never_answered(tmp_path: Path) -> None:
    """The rate at which messages are answered, by the distance of their send hour from the
    recipient's own, is what the simulator planted (measured here from the hidden hours), although
    only the recipients who answered show an hour: the others' silences, often sent far from their
    hour, count at every distance by how likely each hour is theirs. Measured from the most active
    hours of those who have one, as the first estimate is, the rates far from the hour come out too
    high: those recipients are there because they answered."""
    world = small_world(size=2000, weeks=8, seed=5)
    population = world.population
    store = Store.open(f"sqlite:///{tmp_path / 'k.db'}")
    seed_store(store, population, [world.catalog], world.history, world.start)
    with store.session() as session:
        activity = activity_by_hour_of_week(session, list(population.ids), list(population.zone), world.start)
    distance = circular_distance(np.arange(24)[None, :], population.active_hour[:, None]).ravel()
    planted = (np.bincount(distance, weights=activity.answered.ravel(), minlength=13)
               / np.bincount(distance, weights=activity.sent.ravel(), minlength=13))
    learned = answer_rates(activity).answered[:13]
    first = HourEvidence.of(activity.week_counts, activity).prior().rates
    assert first is not None
    assert np.abs(learned[:9] - planted[:9]).max() < 0.04
    assert np.all(np.diff(learned[:7]) < 0)
    assert np.abs(first.answered[:9] - planted[:9]).max() > 0.06


def test_where_the_hour_is_unsure_the_middle_of_the_likely_hours_is_chosen() -> None:
    """Someone who reads between 18:00 and 21:00, 21:00 a little more likely than the rest, is sent
    at 19:00 or 20:00, an hour at most from each of them; someone who surely reads at 08:00 keeps
    08:00 however their doubt is spread."""
    distance = np.arange(13)
    rates = AnswerRates(np.r_[0.55 * np.exp(-distance / 3.0) + 0.05, 0.2], np.zeros(14))
    day = np.full((2, 24), 0.001)
    day[0, 18:22] = [0.24, 0.24, 0.24, 0.28]
    day[1, [8, 12, 13]] = [0.6, 0.2, 0.2]
    day /= day.sum(axis=1, keepdims=True)
    preference = week_preferences(np.zeros((2, 168)), day)
    offsets = np.zeros(2)
    schedule = Schedule(window=(7 * 60, 22 * 60), send_time="optimize")
    monday = datetime(2026, 11, 2, 5, tzinfo=UTC).timestamp()

    def hours(by_week_hour: np.ndarray) -> list[int]:
        at, _ = choose_send_times(by_week_hour, offsets, schedule, monday, 0.0, np.random.default_rng(0))
        return list(local_hours(at, offsets))

    assert hours(preference) == [21, 8]
    chosen = hours(expected_answers(np.zeros((2, 168)), day, rates))
    assert chosen[0] in (19, 20) and chosen[1] == 8
    # Seen once, at 12:00 on a Monday, and planned that Monday at 16:00: 12:00 on Tuesday, not four
    # hours after the Monday reading (the answers' distances are hours of the day).
    week_counts = np.zeros((1, 168))
    week_counts[0, 12] = 1.0
    noon = np.full((1, 24), 0.001)
    noon[0, 12] = 1.0
    noon /= noon.sum()
    at, _ = choose_send_times(expected_answers(week_counts, noon, rates), np.zeros(1),
                              schedule, monday + 11 * 3600, 0.0, np.random.default_rng(0))
    assert datetime.fromtimestamp(float(at[0]), UTC) == datetime(2026, 11, 3, 12, tzinfo=UTC)


def test_how_much_own_hours_say_is_learned_from_recipients_with_several() -> None:
    """Readers who keep to one hour make one open decide their profile; readers who read at any
    hour leave it close to everyone's; too few with several events keep the default."""
    rng = np.random.default_rng(4)
    population = np.full(24, 1 / 24)
    keepers = np.zeros((400, 24))
    keepers[np.arange(400), rng.integers(0, 24, 400)] = rng.integers(2, 6, 400)
    anytime = np.zeros((400, 24))
    np.add.at(anytime, (np.repeat(np.arange(400), 4), rng.integers(0, 24, 1600)), 1.0)
    assert profile_concentration(keepers, population) < 0.5
    assert profile_concentration(anytime, population) > 20
    assert profile_concentration(keepers[:10], population) == sendtime.DAY_PRIOR
    single = np.zeros((400, 24))
    single[:, 5] = 1.0
    assert profile_concentration(single, population) == sendtime.DAY_PRIOR  # one event each says nothing


def test_a_large_audience_is_planned_in_chunks_with_the_same_times(tmp_path: Path, monkeypatch: Any) -> None:
    from engine.learn import sendtime

    store = Store.open(f"sqlite:///{tmp_path / 'k.db'}")
    ids = [f"r{n}" for n in range(1000)]
    zones = ["Europe/Madrid", "Asia/Tokyo", "America/New_York", "UTC"] * 250
    schedule = Schedule(window=(8 * 60, 21 * 60), send_time="optimize")
    now = datetime(2026, 11, 23, 6, 30, tzinfo=UTC)

    def planned() -> list[Any]:
        with store.session() as session:
            return sendtime.plan_send_times(session, schedule, ids, zones, now, exploration=0.3,
                                            rng=np.random.default_rng(9))

    whole = planned()
    monkeypatch.setattr(sendtime, "CHOICE_CHUNK", 7)
    assert planned() == whole
    assert len({t.at for t in whole}) > 4  # the zones and the exploration spread them


def test_events_outside_any_message_show_the_hour_and_campaign_events_do_not(tmp_path: Path) -> None:
    """r0 never opened a message but visits the site and opens the app at 15:00; their unsubscribe
    at 10:00 and a campaign's conversion at 17:00 say nothing of their habits."""
    store = Store.open(f"sqlite:///{tmp_path / 'k.db'}")
    t0 = datetime(2026, 10, 5, 0, tzinfo=UTC)
    ids = ["r0", "r1"]
    events = [Event(id=f"s{day}", recipient_id="r0", type="sent", ts=t0 + timedelta(days=day, hours=8), position=0,
                    item_id="i", message_id=day + 1) for day in (0, 7)]
    events += [Event(id=f"v{day}", recipient_id="r0", type=kind, ts=t0 + timedelta(days=day, hours=15, minutes=20))
               for day, kind in ((1, "visit"), (2, "visit"), (4, "app_open"), (9, "visit"))]
    events += [Event(id="u", recipient_id="r0", type="unsubscribe", ts=t0 + timedelta(days=10, hours=10)),
               Event(id="b", recipient_id="r0", type="bounce", ts=t0 + timedelta(days=10, hours=11)),
               Event(id="c", recipient_id="r0", type="conversion", campaign="weekly",
                     ts=t0 + timedelta(days=11, hours=17)),
               Event(id="o", recipient_id="r1", type="open", ts=t0 + timedelta(days=3, hours=9))]
    with store.session() as session:
        session.add_all(events)
    with store.session() as session:
        activity = activity_by_hour_of_week(session, ids, ["UTC", "UTC"], t0 + timedelta(days=14))
    by_hour = activity.week_counts.reshape(len(ids), 7, 24).sum(axis=1)
    assert by_hour[0, 15] == 4 and by_hour[0].sum() == 4
    assert by_hour[1, 9] == 1 and by_hour[1].sum() == 1
    np.testing.assert_array_equal(activity.answered[0], np.zeros(24))  # a visit answers no message
    assert hour_preferences(activity.week_counts, activity)[0].reshape(7, 24).sum(axis=0).argmax() == 15


def _readers(rng: np.random.Generator, size: int, weekend_shift: int) -> np.ndarray:
    """(size x 168) events of people who read at their own hour (7..20), on random days; on
    Saturdays and Sundays ``weekend_shift`` hours later."""
    counts = np.zeros((size, 168))
    hour = rng.integers(7, 21, size)
    for row in range(size):
        day = rng.integers(0, 7, rng.poisson(6))
        np.add.at(counts[row], day * 24 + (hour[row] + np.where(day >= 5, weekend_shift, 0)) % 24, 1.0)
    return counts


def test_week_concentration_is_what_the_log_says_of_days() -> None:
    rng = np.random.default_rng(4)
    any_day = sendtime.learn_prior(_readers(rng, 400, 0))
    weekends_differ = sendtime.learn_prior(_readers(rng, 400, 3))
    assert any_day.week_concentration >= 100
    assert weekends_differ.week_concentration < 30
    few = sendtime.learn_prior(_readers(rng, 10, 0))  # too few profiles to say: the default
    assert few.week_concentration == sendtime.WEEK_PRIOR


def test_events_on_the_day_weigh_what_the_log_says_days_are_worth() -> None:
    """Someone who reads at 19:00 (four weekdays), was seen at 22:00 on two Sundays and at 20:00
    on a Monday: where days are alike, both Monday's and Sunday's plans keep 19:00; where
    weekends differ, Sunday's plan follows the Sunday readings."""
    rng = np.random.default_rng(5)
    me = np.zeros((1, 168))
    me[0, [24 + 19, 48 + 19, 72 + 19, 96 + 19, 20]] = 1.0  # Tue-Fri 19:00, Mon 20:00
    me[0, 144 + 22] = 2.0                                   # Sun 22:00, twice

    def best_hour(others: np.ndarray, day: int) -> int:
        preference = hour_preferences(np.vstack([me, others]))[0]
        return int(np.argmax(preference[day * 24 + 7: day * 24 + 23])) + 7

    alike = _readers(rng, 400, 0)
    assert best_hour(alike, 0) == 19
    assert best_hour(alike, 6) == 19
    assert best_hour(_readers(rng, 400, 3), 6) == 22


def _readers_who_visit(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(week counts, the part of them that are visits) of people who open mail at their own hour
    and visit the site at it, or an hour either side 40% of the time."""
    hours = rng.choice([7, 8, 12, 13, 18, 19, 20, 21], size)
    counts, visits = np.zeros((size, 168)), np.zeros((size, 168))
    for row, hour in enumerate(hours):
        np.add.at(counts[row], rng.integers(0, 7, 5) * 24 + hour, 1.0)
        at = rng.integers(0, 7, 4) * 24 + (hour + rng.choice([-1, 0, 1], 4, p=[0.2, 0.6, 0.2])) % 24
        np.add.at(visits[row], at, 1.0)
    return counts + visits, visits


def _activity(week_counts: np.ndarray, doings: np.ndarray) -> Activity:
    empty = np.zeros((len(week_counts), 24))
    return Activity(week_counts, empty, empty, empty, doings)


def test_how_far_visits_fall_from_the_reading_hour_is_learned() -> None:
    counts, visits = _readers_who_visit(np.random.default_rng(6), 400)
    spread = sendtime.learn_prior(counts, _activity(counts, visits)).spread
    assert spread is not None
    assert abs(spread[0] - 0.6) < 0.05 and abs(spread[1] - 0.2) < 0.05 and abs(spread[23] - 0.2) < 0.05
    assert spread[2:23].sum() < 0.05
    assert sendtime.learn_prior(counts[:10], _activity(counts[:10], visits[:10])).spread is None  # too few


def test_a_visit_counts_for_the_reading_hours_it_may_have_come_from() -> None:
    """Someone who never opened and visited once at 14:00, among people who read at 13:00 (and
    others) and visit an hour either side now and then: their hour is 13:00, not 14:00."""
    counts, visits = _readers_who_visit(np.random.default_rng(7), 400)
    me = np.zeros((1, 168))
    me[0, 24 + 14] = 1.0
    counts, visits = np.vstack([me, counts]), np.vstack([me, visits])
    activity = _activity(counts, visits)
    prior = sendtime.learn_prior(counts, activity)
    assert int(sendtime.day_preferences(counts, activity, prior)[0].argmax()) == 13
    assert int(sendtime.day_preferences(counts, activity, replace(prior, spread=None))[0].argmax()) == 14


def test_many_visits_around_an_hour_outweigh_a_few_silences_there() -> None:
    """Someone who never opened a message but visited four times at 19:00 and once either side:
    three messages at 19:00 that went unanswered do not move them off 19:00. Read as soft counts
    of the audience's spread (each visit split over the hours it may have come from), the visits
    leave 18:00 and 20:00 close behind 19:00, and the three silences tip the choice; read as each
    recipient's own evidence (the 20:00 visit all but rules out 18:00, the 18:00 one 20:00), they
    do not."""
    counts, visits = _readers_who_visit(np.random.default_rng(8), 400)
    me = np.zeros((1, 168))
    me[0, [19, 24 + 19, 48 + 19, 72 + 19, 96 + 18, 120 + 20]] = 1.0
    counts, visits = np.vstack([me, counts]), np.vstack([me, visits])
    empty = np.zeros((len(counts), 24))
    sent = empty.copy()
    sent[0, 19] = 3.0
    activity = Activity(counts, sent, empty, empty, visits)
    distance = np.minimum(np.arange(13), 12)
    rates = AnswerRates(np.r_[0.55 * np.exp(-distance / 3.0) + 0.05, 0.2], np.full(14, 0.02))
    prior = replace(sendtime.learn_prior(counts, _activity(counts, visits)), rates=rates)
    assert int(sendtime.day_preferences(counts, activity, prior)[0].argmax()) == 19


def test_how_peaked_reading_hours_are_is_read_from_reads_not_from_visits_beside_them() -> None:
    """People who read at one hour and visit an hour either side now and then: their reads say
    their hours are sharp (few pseudo-events of everyone's profile), which their visits, taken as
    they fall, would blur; an audience that only visits still gets an estimate, from its visits."""
    counts, visits = _readers_who_visit(np.random.default_rng(9), 400)
    by_hour = counts.reshape(len(counts), 7, 24).sum(axis=1)
    prior = sendtime.learn_prior(counts, _activity(counts, visits))
    blurred = profile_concentration(by_hour, prior.population)
    assert prior.concentration < 0.2 < blurred
    only_visits = sendtime.learn_prior(visits, _activity(visits, visits))
    assert only_visits.concentration != sendtime.DAY_PRIOR
