"""Shared test set-up. Under scripts/setup-and-test.sh (EDGEOPT_STRICT_SKIPS=1) a skipped test
fails: that script installs every capability, so a skip there means something is missing.
A check that this machine's hardware cannot run ends with tests.outcomes.not_run(reason): its
own "NOT RUN" status, listed with its reason at the end, neither passed nor (strict) failed."""

from __future__ import annotations

import os

import pytest

from .outcomes import CATEGORY, NotRun

STRICT = os.environ.get("EDGEOPT_STRICT_SKIPS") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is not None and call.excinfo.errisinstance(NotRun):
        report.not_run = str(call.excinfo.value.msg)  # stays "skipped" for pytest: never a pass
        return
    if STRICT and report.skipped and not hasattr(report, "wasxfail") and not hasattr(report, "not_run"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped under EDGEOPT_STRICT_SKIPS=1 (a capability is missing): {reason}"


def pytest_report_teststatus(report, config):
    if getattr(report, "not_run", None) is not None and report.when == "call":
        return CATEGORY, "N", ("NOT RUN", {"yellow": True})
    return None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    reports = terminalreporter.stats.get(CATEGORY, [])
    if reports:
        terminalreporter.section("NOT RUN here (hardware this machine lacks)", sep="-", yellow=True)
        for r in reports:
            terminalreporter.line(f"NOT RUN {r.nodeid}: {r.not_run}")


# -- artifacts shared by many tests, built once per session with the real tools ---------------


@pytest.fixture(scope="session")
def digits():
    from edgeopt.toolkit.data import load_digits

    return load_digits()


@pytest.fixture(scope="session")
def trained(digits):
    """The built-in MLP, trained briefly (enough to be far above chance)."""
    from edgeopt.toolkit.config import RunConfig
    from edgeopt.toolkit.pipeline import train_model

    return train_model(RunConfig(epochs=5), digits)


@pytest.fixture(scope="session")
def pruned(trained, digits):
    from edgeopt.toolkit.prune import PruneConfig, prune

    return prune(trained, digits, config=PruneConfig(steps=2, epochs_per_step=1, final_epochs=1))


@pytest.fixture(scope="session")
def quantized(pruned, digits, tmp_path_factory):
    from edgeopt.toolkit.quantize import QuantConfig, quantize

    d = tmp_path_factory.mktemp("quantized")
    return quantize(pruned.model, digits, config=QuantConfig(calibration_samples=64, budget=0.05), out_dir=d)


@pytest.fixture(scope="session")
def host_bundle(quantized, digits, tmp_path_factory):
    from edgeopt.compile import compile_onnx, get_target

    out = tmp_path_factory.mktemp("bundles") / "bundle"
    bundle, parity = compile_onnx(
        quantized.path, target=get_target("host"), out_dir=out, parity_inputs=digits.x_test[:8], onnx_copy=False
    )
    return bundle
