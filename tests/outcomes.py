"""A test outcome of its own for checks this machine cannot run (the CPU lacks the instruction,
the hardware is absent): "NOT RUN", with its reason, listed in the summary and never counted as
passed. Unlike a skip it is no failure under EDGEOPT_STRICT_SKIPS=1: setup-and-test.sh can
install a missing package, not a missing CPU feature.

    from tests.outcomes import not_run
    if not host_has("avx512vnni"):
        not_run("the host CPU lacks AVX512-VNNI (vpdpbusd)")
"""

from __future__ import annotations

import pytest

CATEGORY = "not run"


class NotRun(pytest.skip.Exception):
    """Raised by not_run(); tests/conftest.py gives the report its own status."""


def not_run(reason: str):
    """End the current test as NOT RUN because `reason` (what this machine lacks)."""
    __tracebackhide__ = True
    raise NotRun(reason)
