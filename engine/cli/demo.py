"""``kairos demo``: the whole loop on embedded defaults, with nothing to set up.

A fresh SQLite database, a simulated audience with hidden tastes and four weeks of history (the
messages it was sent and its answers, and half of it visiting the site, which the send times and
taste segments read), a
content pool for every pool the example campaigns name, a ranker trained from that history for
every campaign, and every campaign in [paths] campaigns sent over real SMTP into a local inbox
on 127.0.0.1; then what each run's picks are worth by the hidden truth, next to sending everyone
the same most popular items. The tracking server runs on loopback meanwhile, and simulated
readers act on the delivered mail through it (pixel, tracked links, one-click unsubscribes,
conversions to the ingest API), so the second run of a campaign with variants shows its bandit
moving traffic to the variant that won the first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import httpx
import numpy as np
import typer
import uvicorn
from sqlmodel import col, func, select

from engine.cli import app, out
from engine.cli.campaigns import print_send_report
from engine.cli.common import ConfigOption, load_settings, now
from engine.config import EmailSettings, Settings
from engine.dispatch.inbox import free_port
from engine.errors import KairosError, SpecError
from engine.learn.ranker import TrainingParams
from engine.learn.training import train_campaign
from engine.render.tokens import token_key
from engine.report import campaign_report
from engine.schedule.daemon import EmbeddedServer
from engine.schedule.send import build_context, send_campaign
from engine.sim import TOPICS, World, make_catalog, make_population, seed_store, simulate_history
from engine.sim.baselines import click_given_open, history_stats, top_items
from engine.sim.population import GROUP_NAMES, Population
from engine.sim.readers import load_mail, organic_conversions, read_mail
from engine.sim.respond import SimEvents
from engine.sim.seed import write_events
from engine.sim.visits import VisitHabits
from engine.spec import CampaignSpec, campaign_files, load_campaign
from engine.store import ContentItem, Message, MessageState, Store
from engine.track.app import tracking_app


def demo_settings(settings: Settings, directory: Path, tracking_url: str) -> Settings:
    """The user's paths for campaigns and templates; the demo's own database, inbox and tracking server.

    Without a tracking secret or an ingest API key in the environment the demo uses throwaway
    ones, made for this run only (the links in its inbox cannot be verified after it).
    """
    tracking = dataclasses.replace(settings.tracking, base_url=tracking_url)
    if tracking.secret is None:
        tracking = dataclasses.replace(tracking, secret=secrets.token_bytes(32))
    if tracking.api_key is None:
        tracking = dataclasses.replace(tracking, api_key=secrets.token_urlsafe(24))
    return dataclasses.replace(
        settings,
        database_url=f"sqlite:///{directory / 'demo.db'}",
        email=EmailSettings(transport="inbox", from_address=settings.email.from_address),
        tracking=tracking,
        paths=dataclasses.replace(settings.paths, inbox=directory / "inbox"),
    )


def _taste_summary(population: Population, index: int) -> str:
    order = np.argsort(population.taste[index])[::-1][:2]
    return ", ".join(f"{TOPICS[t]} {population.taste[index, t]:.0%}" for t in order)


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="where the demo writes its database and inbox",
                                            file_okay=False)] = Path("kairos-demo"),
    recipients: Annotated[int, typer.Option("--recipients", min=10, max=200_000,
                                            help="size of the simulated audience")] = 3000,
    seed: Annotated[int, typer.Option("--seed", help="seed of the simulation and every decision")] = 7,
    config: ConfigOption = None,
) -> None:
    """Run every example campaign on a simulated audience, into a local inbox.

    Creates DIR/demo.db and DIR/inbox (a Maildir), replacing an earlier demo's. Example:
    kairos demo --recipients 5000
    """
    started = time.perf_counter()
    loaded = load_settings(config)
    port = free_port()
    settings = demo_settings(loaded, directory, f"http://127.0.0.1:{port}")
    if loaded.tracking.secret is None:
        out.print(f"${loaded.tracking.secret_env} is not set: tracked links and unsubscribe URLs are signed with "
                  "an ephemeral secret made for this run only")
    specs: list[CampaignSpec] = [load_campaign(p, settings.paths.templates)
                                 for p in campaign_files(settings.paths.campaigns)]
    if not specs:
        raise SpecError(settings.paths.campaigns, None, "no campaign files to run; the demo runs the examples "
                        "in campaigns/ (run it from a Kairos checkout, or set [paths] campaigns)")
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)

    rng = np.random.default_rng(seed)
    moment = now()
    population = make_population(recipients, rng)
    catalogs = [make_catalog(pool, 40, moment, rng) for pool in sorted({s.content.pool for s in specs})]
    history = simulate_history(population, catalogs[0], weeks=4, items_per_message=3, now=moment, rng=rng)
    # Visits draw from their own generator, so the rest of the demo is the same with or without them.
    visits = VisitHabits.draw(population, np.random.default_rng([seed, 1])).visits(
        population, catalogs[0], moment - timedelta(weeks=4), moment, np.random.default_rng([seed, 2]), tag="visit")
    store = Store.open(settings.database_url)
    seed_store(store, population, catalogs, history, moment)
    write_events(store, visits)
    out.print(f"simulated {len(population)} recipients in {len(GROUP_NAMES)} hidden taste groups, "
              f"{sum(len(c.ids) for c in catalogs)} content items, {len(history)} events of history and "
              f"{len(visits)} site visits outside any message ({time.perf_counter() - started:.1f}s)")

    for spec in specs:
        _train(store, spec, rng)
    worlds = {spec.name: World(population, next(c for c in catalogs if c.pool == spec.content.pool),
                               variant_open_lift=VARIANT_OPEN_LIFT[:len(spec.variants)])
              for spec in specs}
    asyncio.run(_send_and_read(settings, store, specs, worlds, history, rng, port))

    inbox = settings.paths.inbox / "new"
    delivered = len(list(inbox.iterdir())) if inbox.exists() else 0
    out.print(f"\n{delivered} messages delivered over SMTP to the local inbox {inbox}/ (one file per message; "
              "open any of them with a mail client, or `less` it)")
    out.print(f"database: {directory / 'demo.db'} (SQLite; every `sent` event holds its decision and "
              "probabilities, every click and open the tracking server recorded is an event)")
    out.print(f"demo finished in {time.perf_counter() - started:.1f}s")


# The hidden effect of each campaign's variants on opens, in the order the file lists them: the
# first variant is the better subject line, and the bandit has to find that out.
VARIANT_OPEN_LIFT = (1.35, 1.0, 0.9, 0.8)


async def _send_and_read(settings: Settings, store: Store, specs: list[CampaignSpec], worlds: dict[str, World],
                         history: SimEvents, rng: np.random.Generator, port: int) -> None:
    """Send every campaign with the tracking server up; readers act on each run's mail through it.

    A campaign with more than one variant runs twice, so the second run shows what the first
    run's clicks taught its bandit.
    """
    server = EmbeddedServer(uvicorn.Config(tracking_app(settings, store), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False, lifespan="off"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
            raise KairosError(f"the tracking server did not start on 127.0.0.1:{port}")
        await asyncio.sleep(0.01)
    out.print(f"tracking server on {settings.tracking.base_url} (clicks, opens, unsubscribes, POST /events)")
    inbox = settings.paths.inbox / "new"
    try:
        async with httpx.AsyncClient(base_url=settings.tracking.base_url, timeout=30) as client:
            for spec in specs:
                world = worlds[spec.name]
                for _ in range(2 if len(spec.variants) > 1 else 1):
                    seen = set(inbox.iterdir()) if inbox.exists() else set()
                    report = await send_campaign(build_context(settings, store, spec, rng, now), now_all=True)
                    print_send_report(spec, report)
                    _show_examples(store, report.run_id, world.population)
                    _show_lift(store, report.run_id, world, history, spec.content.items)
                    _show_variants(store, report.run_id, spec)
                    delivered = sorted(set(inbox.iterdir()) - seen) if inbox.exists() else []
                    mails = load_mail(delivered, world, token_key(settings.tracking.secret or b""))
                    reading = await read_mail(world, mails, client, rng, variants=tuple(v.name for v in spec.variants),
                                              api_key=settings.tracking.api_key, now=now())
                    out.print(f"  readers acted on {reading.messages} messages through the tracking server in "
                              f"{reading.seconds:.1f}s: {reading.opens} opens, {reading.clicks} clicks, "
                              f"{reading.conversions} conversions, {reading.unsubscribes} one-click unsubscribes"
                              + (f", {reading.refused} refused" if reading.refused else ""), markup=False)
            if settings.tracking.api_key:
                organic = await organic_conversions(worlds[specs[0].name], client, rng,
                                                    api_key=settings.tracking.api_key, now=now())
                out.print(f"\n{organic} conversions that no message caused (the baseline a holdout measures) posted "
                          "to POST /events", markup=False)
    finally:
        server.should_exit = True
        await serving
    for spec in specs:
        _show_report(store, spec, settings)


def _show_report(store: Store, spec: CampaignSpec, settings: Settings) -> None:
    """The campaign's lift against its holdout, on conversions (which held-out members can reach too)."""
    if not spec.audience.holdout:
        return
    judged = dataclasses.replace(spec, goal="conversion", goal_window=timedelta(days=7))
    report = campaign_report(store, judged, now())
    overall = report.overall
    line = (f"{spec.name}: conversions within 7 days, {overall.goal.value:.1%} of {overall.goal.trials} sent messages "
            f"against {overall.holdout.value:.1%} of {overall.holdout.trials} held out" if overall.holdout else "")
    if overall.lift is not None and overall.lift.absolute is not None:
        line += (f": lift {overall.lift.absolute * 100:+.1f} pts [{(overall.lift.low or 0) * 100:+.1f}, "
                 f"{(overall.lift.high or 0) * 100:+.1f}] (95% CI"
                 f"{', significant' if overall.lift.significant else ', not significant'})")
    out.print(line, markup=False)
    out.print(f"  the whole report: KAIROS_DATABASE_URL={settings.database_url} kairos report {spec.name} "
              "--goal conversion --window 7d --html report.html", markup=False)


def _show_variants(store: Store, run_id: int, spec: CampaignSpec) -> None:
    """How the run split its traffic over the variants (the bandit's doing), when there is a choice."""
    if len(spec.variants) < 2:
        return
    with store.session() as session:
        counts = dict(session.exec(select(Message.variant, func.count()).where(
            Message.run_id == run_id, Message.state == MessageState.SENT).group_by(col(Message.variant))).all())
    total = sum(counts.values()) or 1
    shares = ", ".join(f"{v.name} {counts.get(v.name, 0) / total:.0%}" for v in spec.variants)
    out.print(f"  traffic by variant ({spec.optimize.bandit}): {shares}", markup=False)


def _train(store: Store, spec: CampaignSpec, rng: np.random.Generator) -> None:
    """Train the campaign's ranker from the simulated history (what `kairos train` does)."""
    try:
        report = train_campaign(store, spec, now(), rng, params=TrainingParams(rounds=60))
    except KairosError as exc:
        out.print(f"{spec.name}: no ranker trained ({exc}); popularity decides", markup=False)
        return
    metric = report.primary
    out.print(f"{spec.name}: ranker trained on {report.rows} logged impressions ({report.objective}); held-out "
              f"{metric} {report.metrics['candidate'][metric]:.3f} against popularity's "
              f"{report.metrics['popularity'][metric]:.3f}: {'promoted' if report.promoted else 'not promoted'}",
              markup=False)


def _show_lift(store: Store, run_id: int, world: World, history: SimEvents, slots: int) -> None:
    """What the run's picks are worth by the hidden truth, against the same popular items for all."""
    with store.session() as session:
        sent = session.exec(select(Message.recipient_id, Message.decision)
                            .where(Message.run_id == run_id, Message.state == MessageState.SENT)).all()
    if not sent:
        return
    person = {rid: i for i, rid in enumerate(world.population.ids)}
    item = {iid: j for j, iid in enumerate(world.catalog.ids)}
    recipients = np.array([person[r] for r, _ in sent])
    picks = np.full((len(sent), slots), -1)
    for row, (_, decision) in enumerate(sent):
        for pick in (decision or {}).get("items", []):
            picks[row, pick["slot"]] = item.get(pick["id"], -1)
    stats = history_stats(world.population, world.catalog, history, now())
    popular = top_items(stats.impressions.sum(axis=0), stats.clicks.sum(axis=0), slots)
    kairos = float(click_given_open(world, recipients, picks).mean())
    everyone = float(click_given_open(world, recipients, np.tile(popular, (len(sent), 1))).mean())
    out.print(f"  by the hidden truth, {kairos:.1%} of these messages draw a click once opened, against "
              f"{everyone:.1%} if everyone got the same most popular items: {kairos / everyone:.2f}x", markup=False)


def _show_examples(store: Store, run_id: int, population: Population) -> None:
    """Two recipients of the run: their hidden tastes next to what the policy picked for them."""
    with store.session() as session:
        sent = session.exec(select(Message).where(Message.run_id == run_id, Message.state == MessageState.SENT)
                            .order_by(col(Message.recipient_id)).limit(2)).all()
        titles = dict(session.exec(select(ContentItem.id, ContentItem.title)).all())
    index = {rid: i for i, rid in enumerate(population.ids)}
    for message in sent:
        decision = message.decision or {}
        items = ", ".join(f"{titles.get(i['id'], i['id'])} (p={i['probability']:.3f})"
                          for i in decision.get("items", []))
        taste = _taste_summary(population, index[message.recipient_id]) if message.recipient_id in index else "?"
        out.print(f"  {message.recipient_id} (likes {taste}): variant {message.variant} "
                  f"(p={decision.get('variant_probability', 1):.2f}), items {items}")
