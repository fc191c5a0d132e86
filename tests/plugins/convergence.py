"""Options of the convergence test (tests/convergence): how many schedules, from which seed.

``--convergence-schedules N`` (or ``CONVERGENCE_SCHEDULES=N``) runs N schedules instead of the
CI default; ``--convergence-seed S`` (or ``CONVERGENCE_SEED=S``) starts from another seed.
"""

from __future__ import annotations

import os

import pytest

DEFAULT_SCHEDULES = 20
DEFAULT_SEED = 20261201


def pytest_addoption(parser):
    group = parser.getgroup("convergence")
    group.addoption(
        "--convergence-schedules",
        type=int,
        default=None,
        help=f"schedules the convergence test runs (default {DEFAULT_SCHEDULES}, "
        "or CONVERGENCE_SCHEDULES)",
    )
    group.addoption(
        "--convergence-seed",
        type=int,
        default=None,
        help=f"first seed of the convergence test (default {DEFAULT_SEED}, or CONVERGENCE_SEED)",
    )


@pytest.fixture
def convergence_plan(request) -> tuple[int, list[int]]:
    """(first seed, seeds) of this run: option, then environment, then the CI default."""
    count = request.config.getoption("--convergence-schedules")
    if count is None:
        count = int(os.environ.get("CONVERGENCE_SCHEDULES") or DEFAULT_SCHEDULES)
    first = request.config.getoption("--convergence-seed")
    if first is None:
        first = int(os.environ.get("CONVERGENCE_SEED") or DEFAULT_SEED)
    return first, [first + i for i in range(count)]
