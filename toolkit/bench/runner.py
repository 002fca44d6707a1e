"""One board: deploy every variant's bundle, send the host's reference outputs and the labelled
set, and measure them all with one plan of the agent's `bench` verb through the one driver
(boards/ops.run_plan: all variants interleaved in one process on the board; their onnxruntime
models in a second, the original models in a third), and return the board's part of the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.errors import InputError

from ..boards.deploy import Connection, Deployment
from ..boards.names import open_board, with_options
from ..boards.ops import run_plan
from ..original import FILE as ORIGINAL
from .options import BenchOptions
from .variants import Variant


@dataclass
class HostInputs:
    """Computed once on the host, sent to every board: per variant the parity inputs and the
    outputs of its model.onnx under onnxruntime; the labelled set for accuracy."""

    references: dict[str, Path]  # variant name -> npz (x, ref) or (x)
    parity_reasons: dict[str, str | None]
    labelled: Path | None


def host_inputs(variants: list[Variant], data: Path | None, workdir: Path) -> HostInputs:
    from ..boards.ops import reference

    refs, reasons = {}, {}
    for v in variants:
        x, ref, why = reference(v.bundle, data=data)
        p = workdir / f"ref-{v.bundle.id[:16]}.npz"
        np.savez(p, x=x, **({"ref": ref} if ref is not None else {}))
        refs[v.name], reasons[v.name] = p, why
    labelled = None
    if data is not None:
        try:
            arrays = np.load(data, allow_pickle=False)
            if "y" in arrays.files:
                labelled = workdir / "labelled.npz"
                np.savez(labelled, x=arrays["x"].astype(np.float32), y=arrays["y"])
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(
                f"cannot read inputs from {data}: {exc}", hint="pass an .npz with an array x (and y for accuracy)"
            ) from None
    return HostInputs(refs, reasons, labelled)


def bench_board(
    name: str,
    variants: list[Variant],
    inputs: HostInputs,
    opts: BenchOptions,
    step: Callable[[str], None] = lambda s: None,
    on_spec: Callable = lambda spec: None,
) -> dict:
    """Raises an EdgeoptError when the board fails; the fleet records it."""
    step("starting/connecting")
    with open_board(
        name, local_port=opts.local_port if name == "local" else 0, trust_new_host=opts.trust_new_host
    ) as spec:
        on_spec(spec)
        with Connection(with_options(spec, command_timeout_s=opts.timeout_s)) as conn:
            arch = conn.arch()
            deps = []
            for i, v in enumerate(variants):
                step(f"deploy {i + 1}/{len(variants)} ({v.name})")
                deps.append(Deployment(conn, v.bundle).upload())
            tmp = deps[0]
            try:
                step("upload inputs")
                plan = {
                    "engines": ["tvm"],
                    "warmup": opts.warmup,
                    "rounds": opts.rounds_used,
                    "number": opts.calls_per_round,
                    "settle": opts.settle,
                    "profile_runs": opts.profile_runs,
                    "keep_samples": opts.keep_samples,
                    "eval": str(tmp.put(inputs.labelled)) if inputs.labelled else None,
                    "bundles": [
                        {"name": v.name, "dir": str(d.bundle_dir), "reference": str(tmp.put(inputs.references[v.name]))}
                        for v, d in zip(variants, deps)
                    ],
                }
                step(f"measure {len(variants)} variant(s) x {opts.rounds_used} rounds (TVM)")
                doc = run_plan(tmp, plan, opts.threads)
                if opts.baseline == "ort":
                    step(f"measure {len(variants)} variant(s) x {opts.rounds_used} rounds (onnxruntime)")
                    ort_doc = run_plan(tmp, dict(plan, engines=["ort"]), opts.threads, stem="plan-ort")
                    for r, o in zip(doc["variants"], ort_doc["variants"]):
                        r["ort"] = o["ort"]
                    doc["protocol"]["ort_timed_s"] = ort_doc["protocol"]["timed_s"]
                    # the user's starting point: the original dense fp32 model each bundle carries
                    carriers = [b for b, v in zip(plan["bundles"], variants) if ORIGINAL in v.bundle.files]
                    if carriers:
                        step(f"measure {len(carriers)} original model(s) x {opts.rounds_used} rounds (onnxruntime)")
                        orig_doc = run_plan(
                            tmp,
                            dict(plan, engines=["ort"], eval=None, bundles=[dict(b, onnx=ORIGINAL) for b in carriers]),
                            opts.threads,
                            stem="plan-original",
                        )
                        originals = {o["name"]: o["ort"] for o in orig_doc["variants"]}
                        for r in doc["variants"]:
                            if r["name"] in originals:
                                r["original"] = originals[r["name"]]
            finally:
                tmp.cleanup()
    by_name = {r["name"]: r for r in doc["variants"]}
    results = {}
    for v, d in zip(variants, deps):
        r = by_name[v.name]
        if "parity" not in r:
            r["parity"] = {"top1_agreement": None, "max_abs_diff": None, "reason": inputs.parity_reasons.get(v.name)}
        r["deploy"] = {"uploaded": len(d.uploaded), "skipped": len(d.skipped), "uploaded_bytes": d.uploaded_bytes}
        results[v.name] = r
    return {
        "name": name,
        "ok": True,
        "kind": spec.kind,
        "emulated": spec.kind.startswith("qemu"),
        "address": spec.address,
        "host": spec.host,
        "facts": {**doc["board"], "arch": arch},
        "threads": doc["threads"],
        "peak_rss_mb": doc["peak_rss_mb"],
        "protocol": doc["protocol"],
        "agent": {"version": doc["agent_version"], "digest": doc["agent_digest"], "imports": doc["imports"]},
        "results": results,
    }
