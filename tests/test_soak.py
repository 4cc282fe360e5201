"""Soak: many small apply calls leave the hub's and the client's memory where the first 10,000 left it.

The full figure (100,000 calls) is ``benchmarks/soak.py``'s; this runs the
same loop for 20,000 calls, which fits a test run on two cores, and asserts
the bound on the growth after the first 10,000.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pxmagic import Cluster

CALLS = 20_000
BASELINE = 10_000
BOUND_MB = 50


def load_benchmark():
    path = Path(__file__).parents[1] / "benchmarks" / "soak.py"
    spec = importlib.util.spec_from_file_location("soak_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(900)
def test_memory_stays_flat_over_many_small_calls():
    benchmark = load_benchmark()
    with Cluster(n=2, profile="soak") as rc:
        rc.wait_for_engines(2, timeout=30)
        figures = benchmark.soak(rc, CALLS, BASELINE, window=64)
    assert figures["hub_growth_mb"] < BOUND_MB, figures
    assert figures["client_growth_mb"] < BOUND_MB, figures
