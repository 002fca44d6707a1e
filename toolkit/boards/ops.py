"""The board operations behind `edgeopt deploy`, `bench`, `board info/clean` and `doctor`, as a
Python API: each takes a BoardSpec (toolkit.boards.open_board makes one) and returns a dict."""

from __future__ import annotations

import math
import shutil
import stat
import tempfile
import time
from pathlib import Path

import numpy as np
from edgeopt.compile import Bundle

from edgeopt.errors import BoardError, UsageError

from ..bench.options import MIN_REPEAT_MS, BenchOptions
from .deploy import Connection, Deployment, agent_digest, run_agent

REFERENCE_SAMPLES = 32
ONNX_IN_BUNDLE = "model.onnx"


def deploy(conn: Connection, bundle: Bundle) -> dict:
    """Upload what the board lacks (target checked first), then check that the agent there runs
    with the board's Python and is the one uploaded."""
    dep = Deployment(conn, bundle).upload()
    version = dep.agent("version")
    return {
        "deployment": dep,
        "bundle": {
            "path": str(bundle.path),
            "id": bundle.id,
            "remote": str(dep.bundle_dir),
            "target": bundle.manifest.get("target", {}).get("name"),
        },
        "agent": {
            "remote": str(dep.agent_dir),
            "version": version["agent_version"],
            "digest": version["agent_digest"],
            "python": conn.python(),
            "python_version": version["board"]["python"],
        },
        "uploaded": dep.uploaded,
        "skipped": dep.skipped,
        "removed_stale": dep.removed_stale,
        "uploaded_bytes": dep.uploaded_bytes,
        "board": {
            "name": conn.spec.name,
            "address": conn.spec.address,
            "arch": conn.arch(),
            "host_key_recorded": conn.recorded_host_key,
        },
    }


def parse_threads(text: str | None) -> list[int | None]:
    if not text:
        return [None]
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"--threads {text!r} is not a comma-separated list of thread counts (1,2,4)") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--threads {text!r}: thread counts must be >= 1")
    return values


def reference(
    bundle: Bundle, *, onnx: Path | None = None, data: Path | None = None
) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """Inputs for the board, and onnxruntime's outputs for them on the host (None, with the
    reason, when there is no ONNX to compute them from)."""
    shape = bundle.manifest["inputs"][0]["shape"]
    if data is not None:
        from edgeopt.errors import InputError

        try:
            x = np.load(data, allow_pickle=False)["x"].astype(np.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"cannot read inputs from {data}: {exc}", hint="pass an .npz with an array x") from None
        x = x[:REFERENCE_SAMPLES].reshape(-1, *shape[1:])
    else:
        x = np.random.default_rng(0).random((REFERENCE_SAMPLES, *shape[1:]), dtype=np.float32)
    source = onnx or (bundle.path / ONNX_IN_BUNDLE if ONNX_IN_BUNDLE in bundle.files else None)
    if source is None:
        return x, None, f"bundle has no {ONNX_IN_BUNDLE} and no --onnx was given: no host reference to compare with"
    from ..onnx_run import predict

    return x, predict(source, x), None


def bench(
    conn: Connection,
    bundle: Bundle,
    *,
    runs: int = BenchOptions.runs,
    warmup: int = BenchOptions.warmup,
    threads: list[int | None] = (None,),
    baseline: str | None = None,
    min_repeat_ms: float = MIN_REPEAT_MS,
    onnx: Path | None = None,
    data: Path | None = None,
    keep_samples: bool = False,
) -> dict:
    """Deploy, then the benchmark protocol once per thread count, with parity against the host's
    onnxruntime reference. The result's top level is the first thread count's; `sweep` has all."""
    if runs < 1 or warmup < 0:
        raise UsageError("--runs must be >= 1 and --warmup >= 0")
    if baseline not in (None, "ort"):
        raise UsageError(f"--baseline must be ort, got {baseline!r}")
    if baseline == "ort" and ONNX_IN_BUNDLE not in bundle.files:
        raise UsageError(
            f"--baseline ort needs the bundle's ONNX, and {bundle.path} has no {ONNX_IN_BUNDLE}",
            hint="compile the bundle without --no-onnx",
        )
    batch = bundle.manifest["inputs"][0]["shape"][0]
    if batch != 1:
        raise UsageError(
            f"{bundle.path} was built for a batch of {batch}: the board agent measures one sample per call",
            hint="for bench, compile with --input-shape NAME=1,...; the batch bundle still runs in your own code",
        )
    from .. import original

    # the user's starting point, timed in the same call when the bundle carries it (the agent runs
    # one baseline per call: --baseline ort takes its place)
    with_original = baseline is None and original.FILE in bundle.files
    x, ref, why = reference(bundle, onnx=onnx, data=data)
    summary = deploy(conn, bundle)
    dep: Deployment = summary.pop("deployment")
    repeat = min(5, runs)
    try:
        sweep = measure(
            dep,
            x=x,
            ref=ref,
            no_parity_reason=why,
            warmup=warmup,
            repeat=repeat,
            number=math.ceil(runs / repeat),
            min_repeat_ms=min_repeat_ms,
            threads=threads,
            baseline=baseline or ("original" if with_original else None),
            keep_samples=keep_samples,
        )
    finally:
        dep.cleanup()
    result = dict(sweep[0])
    measured = result.get("original")
    if baseline == "ort" and original.FILE in bundle.files:
        measured = {
            "available": False,
            "reason": "--baseline ort ran the bundle's own ONNX instead of "
            f"{original.FILE}: bench without it for the comparison",
        }
    vs = original.verdict(
        p50_ms=result["latency_ms"]["p50"], original=measured, levers=original.levers_for(bundle.manifest)
    )
    result.update(
        vs_original=vs, speedup_vs_original=vs["speedup_vs_original"], slower_than_original=vs["slower_than_original"]
    )
    result["deploy"] = {k: summary[k] for k in ("uploaded", "skipped", "uploaded_bytes")}
    result["removed_stale"] = summary["removed_stale"]
    result["board"]["name"] = conn.spec.name
    result["board"]["address"] = conn.spec.address
    result["board"]["emulated"] = conn.spec.kind.startswith("qemu")  # the QEMU board: not hardware latencies
    if result["board"]["emulated"]:  # the work per inference on the emulated core (toolkit/boards/qemu/count.py)
        from .qemu.count import for_bench

        shape = bundle.manifest["inputs"][0]["shape"]
        result["instructions_per_inference"] = for_bench(
            conn.spec.kind,
            bundle.path,
            np.asarray(x, np.float32)[:1].reshape(1, *shape),
            baseline_onnx=bundle.path / ONNX_IN_BUNDLE if baseline else None,
        )
    if len(sweep) > 1:
        result["sweep"] = [
            {
                k: d[k]
                for k in ("threads", "latency_ms", "time_evaluator_median_ms", "first_ms", "rss_mb", "baseline")
                if k in d
            }
            for d in sweep
        ]
    return result


def run_plan(dep: Deployment, plan: dict, threads: int | None = None, *, stem: str = "plan") -> dict:
    """The one driver of the agent's measuring verb (`bench --plan`, board/agent/plan.py): the plan
    uploaded into dep's temporary folder, the agent run with `threads` (None: all the board's cores)."""
    import json

    with tempfile.TemporaryDirectory(prefix="edgeopt-plan-") as tmp:
        local = Path(tmp) / f"{stem}.json"
        local.write_text(json.dumps(plan))
        remote = dep.put(local)
    return dep.agent("bench", "--plan", str(remote), *(["--threads", str(threads)] if threads else []))


def measure(
    dep: Deployment,
    *,
    x: np.ndarray | None,
    ref: np.ndarray | None,
    no_parity_reason: str | None,
    warmup: int,
    repeat: int,
    number: int,
    min_repeat_ms: float,
    threads: list[int | None] = (None,),
    baseline: str | None = None,
    keep_samples: bool = False,
) -> list[dict]:
    """One deployed bundle (`edgeopt bench BUNDLE` and `edgeopt run` alike): inputs (and reference
    outputs, for parity) uploaded, then per thread count a one-bundle plan (TVM, with TVM's own
    timer beside it) and, for `baseline` ("ort": the bundle's model.onnx; "original": the user's
    original model), the same plan under onnxruntime in a process of its own; one `edgeopt.bench/1`
    document each. The caller removes dep's temporary folder."""
    from .. import original

    remote_ref = None
    if x is not None:
        with tempfile.TemporaryDirectory(prefix="edgeopt-ref-") as tmp:
            local = Path(tmp) / "reference.npz"
            np.savez(local, x=x, **({"ref": ref} if ref is not None else {}))
            remote_ref = str(dep.put(local))
    item = {"name": "bundle", "dir": str(dep.bundle_dir), "reference": remote_ref}
    plan = {
        "engines": ["tvm"],
        "warmup": warmup,
        "rounds": repeat,
        "number": number,
        "min_round_ms": min_repeat_ms,
        "settle": 0,
        "time_evaluator": True,
        "keep_samples": keep_samples,
        "profile_runs": 0,
        "eval": None,
        "bundles": [item],
    }
    ort_plan = None
    if baseline is not None:
        onnx = original.FILE if baseline == "original" else ONNX_IN_BUNDLE
        ort_plan = dict(
            plan,
            engines=["ort"],
            time_evaluator=False,
            bundles=[dict(item, onnx=onnx, reference=remote_ref if baseline == "ort" else None)],
        )
    sweep = []
    for t in threads:
        doc = run_plan(dep, plan, t)
        out = _bench_doc(doc, no_parity_reason, min_repeat_ms=min_repeat_ms, keep_samples=keep_samples)
        if ort_plan is not None:
            ort = _ort_doc(run_plan(dep, ort_plan, t, stem="plan-ort"), keep_samples=keep_samples and baseline == "ort")
            if baseline == "original":
                out["original"] = ort
            elif not ort["available"]:
                from edgeopt.errors import AgentError

                raise AgentError(
                    f"the onnxruntime baseline could not run on the board: {ort['reason']}",
                    hint="bench without --baseline, or install onnxruntime on the board "
                    "(edgeopt board setup --with-ort)",
                )
            else:
                out["baseline"] = {k: v for k, v in ort.items() if k != "available"}
        sweep.append(out)
    return sweep


def _bench_doc(doc: dict, no_parity_reason: str | None, *, min_repeat_ms: float, keep_samples: bool) -> dict:
    [v] = doc["variants"]
    tvm = v["tvm"]
    out = {
        "schema": "edgeopt.bench/1",
        "bundle": v["bundle"],
        "threads": doc["threads"],
        "latency_ms": tvm["latency_ms"],
        "load_ms": tvm["load_ms"],
        "first_ms": tvm["first_ms"],
        "rss_mb": doc["peak_rss_mb"],  # the TVM process's (onnxruntime runs in a process of its own)
        "time_evaluator_median_ms": tvm["time_evaluator_median_ms"],
        "repeat_mean_median_ms": tvm["repeat_mean_median_ms"],
        "python_overhead_ms": tvm["python_overhead_ms"],
        "protocol": {
            "warmup": doc["protocol"]["warmup"],
            "repeat": doc["protocol"]["rounds"],
            "calls_per_repeat": tvm["calls_per_round"],
            "min_repeat_ms": min_repeat_ms,
        },
        "parity": v.get("parity")
        or {"top1_agreement": None, "max_abs_diff": None, "mean_abs_diff": None, "reason": no_parity_reason},
        "board": dict(doc["board"]),
        "agent": {
            "version": doc["agent_version"],
            "digest": doc["agent_digest"],
            "imports": doc["imports"],
            "peak_rss_mb": doc["peak_rss_mb"],
        },
    }
    if keep_samples:
        out["samples_ms"] = tvm["samples_ms"]
    return out


def _ort_doc(doc: dict, *, keep_samples: bool) -> dict:
    """onnxruntime's engine in the bench document's shape: measured, or why not."""
    o = doc["variants"][0]["ort"]
    if not o["available"]:
        return {"available": False, "reason": o["reason"]}
    out = {
        "available": True,
        "engine": "onnxruntime",
        "version": o.get("version"),
        "threads": doc["threads"],
        "onnx": o.get("onnx"),
        "latency_ms": o["latency_ms"],
        "load_ms": o["load_ms"],
        "first_inference_ms": o["first_ms"],
        "calls_per_repeat": o["calls_per_round"],
        "peak_rss_mb": doc["peak_rss_mb"],
        "imports": doc["imports"],
    }
    if "parity" in o:
        out["parity"] = o["parity"]
    if keep_samples:
        out["samples_ms"] = o["samples_ms"]
    return out


def info(conn: Connection) -> dict:
    """Board facts from the agent (uploaded if missing), and what is in the board's store."""
    from .deploy import AGENT_SOURCE, agent_files

    agent_dir = conn.root() / "agent" / agent_digest()
    remote = conn.remote_sha256([agent_dir / f.relative_to(AGENT_SOURCE.parent).as_posix() for f in agent_files()])
    from edgeopt.compile.bundle import sha256_file

    for f in agent_files():
        r = agent_dir / f.relative_to(AGENT_SOURCE.parent).as_posix()
        if remote.get(str(r)) != sha256_file(f):
            conn.upload(f, r)
    doc = run_agent(conn, agent_dir, "info")
    # a folder counts as a bundle once its manifest is there (it is uploaded last)
    bundles = [
        e.filename
        for e in conn.listdir_attr(conn.root() / "bundles")
        if stat.S_ISDIR(e.st_mode or 0)
        and any(f.filename == "manifest.json" for f in conn.listdir_attr(conn.root() / "bundles" / e.filename))
    ]
    return {
        "board": {**doc["board"], "name": conn.spec.name, "address": conn.spec.address},
        "python": conn.python(),
        "provisioned": conn.python() == str(conn.venv_python()),
        "runtime_ok": bool(doc["board"].get("tvm")) and bool(doc["board"].get("numpy")),
        "store": {"root": str(conn.root()), "bundles": sorted(bundles)},
        "agent": {"version": doc["agent_version"], "digest": doc["agent_digest"]},
    }


def clean(conn: Connection, *, keep: int) -> dict:
    """Keep the `keep` most recently deployed bundles; remove the rest, stale agents, leftover
    temporary directories and half-uploaded `.part` files."""
    if keep < 0:
        raise UsageError("--keep must be >= 0")
    root = conn.root()
    entries = [e for e in conn.listdir_attr(root / "bundles") if stat.S_ISDIR(e.st_mode or 0)]
    entries.sort(key=lambda e: e.st_mtime or 0, reverse=True)
    removed, kept = [], [e.filename for e in entries[:keep]]
    for e in entries[keep:]:
        conn.remove_tree(root / "bundles" / e.filename)
        removed.append(str(root / "bundles" / e.filename))
    for e in conn.listdir_attr(root / "agent"):
        if e.filename != agent_digest():
            conn.remove_tree(root / "agent" / e.filename)
            removed.append(str(root / "agent" / e.filename))
    for e in conn.listdir_attr(root / "tmp"):
        conn.remove_tree(root / "tmp" / e.filename)
        removed.append(str(root / "tmp" / e.filename))
    for name in kept:  # half-uploaded files left by an interrupted deploy
        for e in conn.listdir_attr(root / "bundles" / name):
            if e.filename.endswith(".part"):
                conn.sftp.remove(str(root / "bundles" / name / e.filename))
                removed.append(str(root / "bundles" / name / e.filename))
    return {"kept": kept, "removed": removed}


# -- doctor -----------------------------------------------------------------------------------------


def host_checks() -> list[dict]:
    """The host toolchain: each check is {name, ok, detail, fix}."""
    from importlib.metadata import PackageNotFoundError, version

    checks = []

    def add(name: str, ok: bool, detail: str, fix: str | None = None) -> None:
        checks.append({"name": name, "ok": ok, "detail": detail, "fix": None if ok else fix})

    for dist, want in (("apache-tvm", "0.27.0.post1"), ("apache-tvm-ffi", "0.1.14.post1")):
        try:
            have = version(dist)
        except PackageNotFoundError:
            have = None
        add(dist, have == want, f"{have or 'not installed'} (want {want})", f"pip install {dist}=={want}")
    for dist in ("onnxruntime", "paramiko"):
        try:
            add(dist, True, version(dist))
        except PackageNotFoundError:
            add(dist, False, "not installed", f"pip install {dist}")
    from edgeopt.compile.targets import CROSS_CC

    cc = shutil.which(CROSS_CC)
    add(
        "cross compiler",
        cc is not None,
        cc or f"{CROSS_CC} not found",
        "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
    )
    qemu = shutil.which("qemu-system-aarch64") or shutil.which("qemu-aarch64-static")
    from .qemu.build import find

    image = find()
    add(
        "qemu (optional, for the emulated aarch64 board)",
        True,
        (qemu or "not installed (optional)")
        + (f"; image {image.key} built" if image else "; image not built (edgeopt board qemu build)"),
    )
    add("ssh known_hosts", True, ", ".join(str(p) for p in _known_hosts_files()))
    return checks


def _known_hosts_files() -> list[Path]:
    from .config import toolkit_known_hosts, user_known_hosts

    return [p for p in (user_known_hosts(), toolkit_known_hosts()) if p.exists()] or [Path("(none yet)")]


def board_checks(conn: Connection) -> list[dict]:
    checks = []
    t0 = time.perf_counter()
    arch = conn.arch()
    checks.append(
        {
            "name": "ssh",
            "ok": True,
            "detail": f"{conn.spec.address}, {arch}, {(time.perf_counter() - t0) * 1e3:.0f} ms",
            "fix": None,
        }
    )
    try:
        doc = info(conn)
    except BoardError as exc:
        checks.append({"name": "agent", "ok": False, "detail": str(exc), "fix": "edgeopt board setup BOARD"})
        return checks
    b = doc["board"]
    checks.append({"name": "python", "ok": True, "detail": f"{doc['python']} ({b['python']})", "fix": None})
    checks.append(
        {
            "name": "numpy",
            "ok": bool(b.get("numpy")),
            "detail": b.get("numpy") or b.get("numpy_error", "missing"),
            "fix": "edgeopt board setup BOARD",
        }
    )
    checks.append(
        {
            "name": "tvm runtime",
            "ok": bool(b.get("tvm")),
            "detail": b.get("tvm") or b.get("tvm_error", "missing"),
            "fix": "edgeopt board setup BOARD",
        }
    )
    return checks
