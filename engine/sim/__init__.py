"""A synthetic audience with known preferences, for the demo, tests and benchmarks."""

from engine.sim.population import (
    TOPICS,
    Catalog,
    Population,
    make_catalog,
    make_population,
    simulate_history,
)
from engine.sim.seed import seed_store

__all__ = ["TOPICS", "Catalog", "Population", "make_catalog", "make_population", "seed_store", "simulate_history"]
