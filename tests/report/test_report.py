"""Campaign reports over planted outcomes: rates, lift and its interval, attribution, splits, runs, empty campaigns."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from rich.console import Console

from engine.errors import DataError
from engine.report import build_report, print_report, render_html, report_json
from engine.report.outcomes import credit
from engine.report.stats import lift, rate
from engine.store import Store
from engine.store.campaign_columns import MessageColumns, ResponseColumns
from engine.store.tables import Event, Message, Run, RunState
from tests.report.planted import NOW, PLANNED, TREATED_RATES, plant, write_campaign


def test_wilson_and_newcombe_match_the_published_examples() -> None:
    # Newcombe (1998), Statistics in Medicine 17, 873-890: 56/70 against 48/80, method 10.
    difference = lift(rate(56, 70), rate(48, 80))
    assert difference.absolute == pytest.approx(0.2)
    assert (difference.low, difference.high) == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))
    assert difference.significant
    # Wilson for 0 of 10 still has an upper bound; the Wald interval would be [0, 0].
    none = rate(0, 10)
    assert (none.low, none.high) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert lift(rate(3, 10), none).relative is None  # no ratio against a zero rate


def test_goal_rates_and_lift_match_the_planted_outcomes(store: Store, tmp_path: Path) -> None:
    spec = write_campaign(tmp_path)
    truth = plant(store)
    with store.session() as session:
        report = build_report(session, spec, NOW, np.random.default_rng(0))

    assert report.states == truth.states and report.messages == 6000
    overall = report.overall
    assert (overall.goal.hits, overall.goal.trials) == (truth.treated_goals, truth.treated)
    assert overall.holdout is not None and overall.lift is not None
    # late conversions and those naming another campaign are not counted
    assert (overall.holdout.hits, overall.holdout.trials) == (truth.holdout_goals, truth.holdout)
    assert overall.lift.absolute == pytest.approx(truth.treated_goals / truth.treated
                                                  - truth.holdout_goals / truth.holdout)
    assert overall.lift.low is not None and overall.lift.high is not None
    assert overall.lift.low < truth.true_lift < overall.lift.high
    assert overall.lift.significant
    assert overall.engagement["open"].hits == truth.opens
    assert overall.engagement["bounce"].trials == truth.treated + truth.states["failed"]
    assert {c.name for c in report.channels} == {"email", "push"}
    assert sum(c.goal.trials for c in report.channels) == truth.treated


def test_a_variant_that_wins_with_one_segment_and_loses_with_the_other_shows_in_the_split(
        store: Store, tmp_path: Path) -> None:
    spec = write_campaign(tmp_path)
    truth = plant(store)
    with store.session() as session:
        report = build_report(session, spec, NOW, np.random.default_rng(0), by="segment", labels=truth.segment_of)

    assert report.split_by == "segment"
    arms = {(g.overall.name, v.name): v for g in report.groups for v in g.variants}
    for (segment, variant), (sent, goals) in truth.arms.items():
        assert (arms[(segment, variant)].goal.trials, arms[(segment, variant)].goal.hits) == (sent, goals)
    best = {segment: max(("bold", "calm"), key=lambda v: TREATED_RATES[(segment, v)])
            for segment in ("bargain-hunters", "news-readers")}
    assert best == {"bargain-hunters": "bold", "news-readers": "calm"}
    for segment, variant in best.items():
        winner = arms[(segment, variant)].posterior
        assert winner is not None and winner.p_best > 0.99
    for group in report.groups:  # each segment compared with its own holdout members
        assert group.overall.holdout is not None and group.overall.holdout.trials > 0
        assert group.overall.lift is not None and group.overall.lift.significant


def test_one_run_is_reported_apart_and_a_missing_run_is_refused(store: Store, tmp_path: Path) -> None:
    spec = write_campaign(tmp_path)
    truth = plant(store)
    with store.session() as session:
        later = Run(campaign="spring-sale", spec_hash="x", started_at=NOW - timedelta(days=1),
                    state=RunState.RUNNING)
        session.add(later)
        session.flush()
        session.execute(sa.insert(Message), [
            {"run_id": later.id, "campaign": "spring-sale", "recipient_id": f"r{n:05d}", "state": "planned",
             "send_at": NOW + timedelta(hours=1), "updated_at": NOW} for n in range(50)])
        runs = list(session.execute(sa.select(Run.id).order_by(Run.id)).scalars())

    with store.session() as session:
        everything = build_report(session, spec, NOW, np.random.default_rng(0))
        first = build_report(session, spec, NOW, np.random.default_rng(0), run=runs[0])
        second = build_report(session, spec, NOW, np.random.default_rng(0), run=runs[1])
        with pytest.raises(DataError, match=rf"has no run 99 \(its runs: {runs[0]}, {runs[1]}\)"):
            build_report(session, spec, NOW, np.random.default_rng(0), run=99)
        with pytest.raises(DataError, match="expected one of segment, tier"):
            build_report(session, spec, NOW, np.random.default_rng(0), by="planet")

    assert everything.messages == 6050 and [r.states.get("planned", 0) for r in everything.runs] == [0, 50]
    assert first.states == truth.states and first.overall.goal.hits == truth.treated_goals
    assert second.states["planned"] == 50 and second.overall.goal.trials == 0 and second.overall.lift is not None
    assert second.overall.lift.absolute is None


def test_an_empty_campaign_reports_zeros(store: Store, tmp_path: Path) -> None:
    spec = write_campaign(tmp_path)
    with store.session() as session:
        report = build_report(session, spec, NOW, np.random.default_rng(0), by="segment", labels={})
    assert report.messages == 0 and report.runs == [] and set(report.states.values()) == {0}
    assert report.overall.goal.value == 0.0 and report.overall.goal.low is None
    assert report.overall.lift is not None and report.overall.lift.absolute is None
    assert not report.overall.lift.significant
    assert [(v.name, v.goal.trials) for v in report.variants] == [("bold", 0), ("calm", 0)]
    data = report_json(report)
    assert data["overall"]["goal"] == {"hits": 0, "trials": 0, "rate": 0.0, "low": None, "high": None}
    assert data["split"] == {"by": "segment", "groups": []}
    console = Console(record=True, width=160)
    print_report(console, report)
    assert "lift: not measurable yet" in console.export_text()
    page = render_html(report)
    assert "<h1>spring-sale</h1>" in page and 'id="lift">–<' in page


def test_holdout_members_are_credited_from_their_planned_send_time(store: Store, tmp_path: Path) -> None:
    spec = write_campaign(tmp_path)
    with store.session() as session:
        run = Run(campaign="spring-sale", spec_hash="x", started_at=PLANNED, state=RunState.FINISHED)
        session.add(run)
        session.flush()
        session.execute(sa.insert(Message), [
            {"run_id": run.id, "campaign": "spring-sale", "recipient_id": recipient, "state": "holdout",
             "send_at": PLANNED, "updated_at": PLANNED} for recipient in ("early", "inside", "late")])
        session.execute(sa.insert(Event), [
            {"id": "e1", "recipient_id": "early", "type": "conversion", "ts": PLANNED - timedelta(hours=1)},
            {"id": "e2", "recipient_id": "inside", "type": "conversion", "ts": PLANNED + timedelta(hours=47)},
            {"id": "e3", "recipient_id": "late", "type": "conversion", "ts": PLANNED + timedelta(hours=49)}])
    with store.session() as session:
        holdout = build_report(session, spec, NOW, np.random.default_rng(0)).overall.holdout
    assert holdout is not None and (holdout.hits, holdout.trials) == (1, 3)


def test_a_campaign_with_a_run_per_event_counts_each_run_and_shows_the_latest(store: Store, tmp_path: Path) -> None:
    spec = write_campaign(tmp_path)
    with store.session() as session:
        runs = [Run(campaign="spring-sale", spec_hash="x", trigger="event:signup", key=f"event:e{n}",
                    started_at=PLANNED + timedelta(minutes=n), state=RunState.FINISHED) for n in range(25)]
        session.add_all(runs)
        session.flush()
        session.execute(sa.insert(Message), [
            {"run_id": run.id, "campaign": "spring-sale", "recipient_id": f"r{n:05d}",
             "state": "sent" if n % 5 else "holdout", "send_at": run.started_at,
             "sent_at": run.started_at if n % 5 else None, "variant": "bold" if n % 5 else None,
             "updated_at": PLANNED} for n, run in enumerate(runs)])
    with store.session() as session:
        report = build_report(session, spec, NOW, np.random.default_rng(0))
    assert [sum(r.states.values()) for r in report.runs] == [1] * 25
    assert [r.states["holdout"] for r in report.runs[:6]] == [1, 0, 0, 0, 0, 1]
    assert report.states["sent"] == 20 and report.states["holdout"] == 5

    console = Console(record=True, width=200)
    print_report(console, report)
    shown = console.export_text()
    assert "the latest 20 of 25 runs; --json lists them all" in shown
    assert f"\n│ {report.runs[-1].id} " in shown and f"\n│ {report.runs[4].id} " not in shown
    assert "The latest 20 of 25 runs" in render_html(report)


def test_events_naming_their_message_count_for_it_and_others_go_to_the_latest_touch() -> None:
    def objects(*values: str | None) -> np.ndarray:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array

    hour = 3600.0
    # ann: two runs, sent at 0h and 10h; bob: held out, planned at 0h
    messages = MessageColumns(
        id=np.array([1, 2, 3]), run_id=np.array([1, 2, 1]), recipient_id=objects("ann", "ann", "bob"),
        state=objects("sent", "sent", "holdout"), at=np.array([0.0, 10 * hour, 0.0]),
        channel=objects("email", "email", None), variant=objects("a", "a", None))
    responses = ResponseColumns(
        recipient_id=objects("ann", "ann", "bob", "bob"), type=objects("click", "conversion", "conversion", "click"),
        ts=np.array([11 * hour, 12 * hour, 50 * hour, 1 * hour]), message_id=np.array([1, -1, -1, 7]))
    # the click names ann's first message: it counts there, though her second came in between
    assert credit(messages, responses, "click", 48 * hour).tolist() == [True, False, False]
    # ... unless the goal window (here 2h) has passed since that message
    assert credit(messages, responses, "click", 2 * hour, direct_window=True).tolist() == [False, False, False]
    # a conversion names nothing: ann's latest touch gets it; bob's came 50h after his planned send
    assert credit(messages, responses, "conversion", 48 * hour).tolist() == [False, True, False]
    assert credit(messages, responses, "conversion", 60 * hour).tolist() == [False, True, True]
