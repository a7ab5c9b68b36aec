"""A synthetic audience with known preferences, for the demo, tests and benchmarks."""

from engine.sim.population import (
    TOPICS,
    Catalog,
    Population,
    make_catalog,
    make_population,
)
from engine.sim.respond import SimEvents, World, simulate_history
from engine.sim.seed import seed_store, write_events

__all__ = ["TOPICS", "Catalog", "Population", "SimEvents", "World", "make_catalog", "make_population", "seed_store",
           "simulate_history", "write_events"]
