"""The benchmark protocol (the one of the `bench` verb, board/agent/plan.py) and the accuracy and
parity checks, on the board."""

from __future__ import annotations

import time

import numpy as np


def percentiles(samples_ms: list) -> dict:
    a = np.asarray(samples_ms, dtype=np.float64)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "std": float(a.std()),
        "min": float(a.min()),
        "max": float(a.max()),
        "runs": int(a.size),
    }


class Engine:
    """One thing to time (a bundle under the TVM VM, a model under onnxruntime) and what the
    protocol measured of it."""

    def __init__(self, name: str, kind: str, call, load_ms: float) -> None:
        self.name = name
        self.kind = kind  # "tvm" | "onnxruntime"
        self.call = call
        self.load_ms = load_ms
        self.first_ms = 0.0
        self.samples: list = []
        self.round_medians: list = []
        self.per_round: list = []


def run_protocol(
    engines: list, *, warmup: int, rounds: int, number: int, settle: int = 0, min_round_ms: float = 0.0
) -> float:
    """The one measuring protocol of the agent (the `bench` verb's plans); returns the timed seconds.

    Per engine: the first call timed alone, then `warmup` calls discarded. Then `rounds` rounds;
    in each, every engine runs `settle` untimed calls (its thread pool wakes up after the last
    engine's) and then at least `number` calls and at least `min_round_ms`, each call timed alone;
    the engine order rotates by one every round, so drift on the board falls on all alike."""
    for e in engines:
        t0 = time.perf_counter()
        e.call()
        e.first_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(warmup):
            e.call()
    order = list(range(len(engines)))
    t_start = time.perf_counter()
    for r in range(rounds):
        k = r % len(order) if order else 0
        for i in order[k:] + order[:k]:
            e = engines[i]
            for _ in range(settle):
                e.call()
            this_round = []
            start = time.perf_counter()
            while len(this_round) < number or (time.perf_counter() - start) * 1e3 < min_round_ms:
                t = time.perf_counter()
                e.call()
                this_round.append((time.perf_counter() - t) * 1e3)
            e.samples.extend(this_round)
            e.round_medians.append(float(np.median(this_round)))
            e.per_round.append(len(this_round))
    return time.perf_counter() - t_start


def parity(outs: np.ndarray, reference: np.ndarray) -> dict:
    diff = np.abs(outs.astype(np.float64) - reference.astype(np.float64))
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "top1_agreement": float((outs.argmax(-1) == reference.argmax(-1)).mean()),
        "samples": int(len(outs)),
    }


def evaluate(bundle, x: np.ndarray, y, reference) -> dict:
    """Accuracy on labelled samples, and agreement with the host's reference outputs if given."""
    outs = np.concatenate([bundle.run(x[i : i + 1]) for i in range(len(x))])
    result = {"samples": int(len(x))}
    if y is not None:
        result["accuracy"] = float((outs.argmax(-1) == y).mean())
    if reference is not None:
        result["parity"] = parity(outs, reference)
    return result, outs
