"""Ray Tune runs the trials: a local Ray started here (loopback only, no dashboard) or an existing
cluster (--address / RAY_ADDRESS). One trial = one setting: its CPU stages run where the trial is
placed (the stage cache shares work between trials), then one Ray task per board measures it,
holding that board's custom resource. Tune's experiment state under OUT/.tune makes the same
command resume; FailureConfig retries a trial whose worker died; a setting that fails is reported
as a finished trial with its one-line error, so the sweep goes on."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from edgeopt.errors import EdgeoptError, UsageError

from .cache import StageCache
from .spec import SETTING_KEYS, Search, SweepSpec, board_resource, normalize, setting_id, setting_label

# what Optuna minimizes/maximizes; a failed setting reports the worst values so the sampler moves on
OBJECTIVES = {"val_accuracy": "max", "p50_ms": "min", "bytes": "min"}
WORST = {"val_accuracy": 0.0, "p50_ms": 1e9, "bytes": 1e12}
ATTEMPTS = "attempts.jsonl"


def _log(out: Path, **fields) -> None:
    with open(out / ATTEMPTS, "a") as f:
        f.write(json.dumps({**fields, "pid": os.getpid(), "time": time.time()}) + "\n")


def _failure(exc: BaseException) -> dict:
    if isinstance(exc, EdgeoptError):
        return {"error": str(exc).splitlines()[0], "error_class": type(exc).__name__, "exit_code": exc.exit_code}
    first = (str(exc).splitlines() or [""])[0]
    return {
        "error": f"internal error: {type(exc).__name__}: {first}",
        "error_class": type(exc).__name__,
        "exit_code": 70,
    }


def _measure_task(board: str, bundle: str, original: str, eval_npz: str, spec_json: dict) -> dict:
    """Runs as a Ray task holding the board's resource."""
    import ray

    from .measure import measure

    node = ray.get_runtime_context().get_node_id()
    try:
        doc = measure(
            board,
            bundle=Path(bundle),
            original=Path(original),
            eval_npz=Path(eval_npz),
            spec=SweepSpec.model_validate(spec_json),
        )
        return {**doc, "ok": True, "node_id": node}
    except Exception as exc:  # noqa: BLE001  (one board's failure is recorded, not raised)
        return {"board": board, "ok": False, "node_id": node, **_failure(exc)}


def trial(config: dict, ctx: dict) -> None:
    """One setting, end to end; reports one result (Ray Tune's function trainable)."""
    import ray
    from ray import tune

    setting = normalize({k: config[k] for k in SETTING_KEYS})
    sid = setting_id(setting)
    out = Path(ctx["out"])
    spec = SweepSpec.model_validate(ctx["spec"])
    node = ray.get_runtime_context().get_node_id()
    _log(out, event="start", sweep=ctx["name"], setting_id=sid, node_id=node)
    record = {"setting_id": sid, "setting": setting, "label": setting_label(setting), "node_id": node}
    started = time.perf_counter()
    try:
        from .stages import prepare

        prep = prepare(setting, spec, StageCache(Path(ctx["cache"])))
        record.update(
            {
                "val_accuracy": prep.val_accuracy,
                "test_accuracy": prep.test_accuracy,
                "dense_val_accuracy": prep.dense_val_accuracy,
                "dense_test_accuracy": prep.dense_test_accuracy,
                "val_drop": prep.dense_val_accuracy - prep.val_accuracy,
                "sparsity": prep.sparsity,
                "bytes": prep.bytes,
                "quant_path": prep.quant_path,
                "bundle": str(prep.bundle),
                "stage_keys": prep.keys,
            }
        )
        remote = ray.remote(_measure_task)
        refs = [
            remote.options(
                num_cpus=0,
                scheduling_strategy="DEFAULT",
                resources={board_resource(b): 1},
                max_retries=spec.max_failures,
                name=f"measure {b}",
            ).remote(b, str(prep.bundle), str(prep.original), str(prep.eval_npz), ctx["spec"])
            for b in ctx["boards"]
        ]
        boards = {m["board"]: m for m in ray.get(refs)}  # every board at once: a group measures in parallel
        record["boards"] = boards
        failed = [m for m in boards.values() if not m["ok"]]
        if failed:
            record.update(
                {
                    "ok": False,
                    **{k: failed[0][k] for k in ("error", "error_class", "exit_code")},
                    "error": f"board {failed[0]['board']}: {failed[0]['error']}",
                }
            )
        else:
            record["ok"] = True
    except Exception as exc:  # noqa: BLE001  (a failing setting is recorded; the sweep goes on)
        record.update({"ok": False, **_failure(exc)})
    record["seconds"] = round(time.perf_counter() - started, 3)
    record["within_budget"] = bool(record["ok"] and record["val_drop"] <= spec.budget + 1e-9)
    first = ctx["boards"][0]
    metrics = {"ok": record["ok"], "setting_id": sid, "record": json.dumps(record)}
    if record["ok"]:
        metrics.update(
            val_accuracy=record["val_accuracy"], p50_ms=record["boards"][first]["p50_ms"], bytes=record["bytes"]
        )
    else:
        metrics.update(WORST)
    _log(out, event="end", sweep=ctx["name"], setting_id=sid, node_id=node, ok=record["ok"])
    tune.report(metrics)


class ProgressLine:
    """Trials done / running / left, one line on stderr whenever it changes. Read from the trials'
    own start/end log (attempts.jsonl), so a resumed sweep counts what earlier runs finished and a
    retried trial counts once."""

    def __init__(self, out: Path, name: str, total: int, quiet: bool, interval: float = 1.0) -> None:
        import threading

        self.out, self.name, self.total, self.quiet, self.interval = out, name, total, quiet, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edgeopt-sweep-progress", daemon=True)
        self._last = None

    def counts(self) -> tuple[int, int, int]:
        last: dict[str, str] = {}
        failed = set()
        for line in _lines(self.out / ATTEMPTS):
            e = json.loads(line)
            if e.get("sweep") != self.name:  # another spec's sweep into the same --out
                continue
            last[e["setting_id"]] = e["event"]
            if e["event"] == "end" and not e.get("ok", True):
                failed.add(e["setting_id"])
        done = sum(1 for v in last.values() if v == "end")
        running = sum(1 for v in last.values() if v == "start")
        return done, running, len(failed & {k for k, v in last.items() if v == "end"})

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.show()

    def show(self) -> None:
        done, running, failed = self.counts()
        if self.quiet or (done, running, failed) == self._last:
            return
        self._last = (done, running, failed)
        left = max(0, self.total - done - running)
        print(
            f"sweep: {done} done, {running} running, {left} left" + (f" ({failed} failed)" if failed else ""),
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> "ProgressLine":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.show()


def _env_for_local_ray() -> None:
    """Before `import ray`: a node address of 127.0.0.1 stays loopback (Ray otherwise swaps it for
    the machine's outward address), and no usage statistics leave the machine."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if "ray" in sys.modules:  # already imported (a Python caller): the constant was read at import
        import ray._private.ray_constants as rc

        rc.ENABLE_RAY_CLUSTER = False


def connect(
    *, address: str | None, boards: list[str], num_cpus: int | None = None, temp_dir: Path | None = None
) -> dict:
    """Start the local Ray (127.0.0.1, no dashboard, one unit of each board's resource) or join
    the cluster at `address`; returns what was joined."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy reporter honours verbose=0: our progress line only
    if address is None or address.split(":")[0] in ("127.0.0.1", "localhost"):
        _env_for_local_ray()  # a loopback cluster: this driver's node address is loopback too
    import ray

    if ray.is_initialized():
        ray.shutdown()
    if address is None:
        ray.init(
            address="local",
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            num_cpus=num_cpus,
            resources={board_resource(b): 1 for b in boards},
            log_to_driver=False,
            logging_level="WARNING",
            **({"_temp_dir": str(temp_dir)} if temp_dir else {}),
        )
    else:
        os.environ.pop("RAY_ADDRESS", None)  # ray.init(address=...) wins; the variable would confuse workers
        try:
            ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(
                f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}",
                hint="check --address (HOST:PORT of the head's GCS) or RAY_ADDRESS; leave both out for a local Ray",
            ) from None
        have = ray.cluster_resources()
        missing = [b for b in boards if have.get(board_resource(b), 0) < 1]
        if missing:
            ray.shutdown()
            b = missing[0]
            raise UsageError(
                f"the Ray cluster at {address} has no resource {board_resource(b)} for board {b!r}",
                hint=f"start the node that reaches the board with --resources='{{\"{board_resource(b)}\": 1}}'",
            )
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {
        "address": address or "local",
        "nodes": [
            {"node_id": n["NodeID"], "ip": n["NodeManagerAddress"], "resources": n.get("Resources", {})} for n in nodes
        ],
    }


def run_trials(spec: SweepSpec, *, out: Path, cache: Path, boards: list[str], quiet: bool) -> tuple[list[dict], bool]:
    """Run (or resume) the sweep's trials. Returns (records of finished trials, interrupted)."""
    from ray import tune

    name = f"sweep-{spec.fingerprint()}"
    storage = (out / ".tune").resolve()
    path = storage / name
    ctx = {
        "name": name,
        "spec": spec.model_dump(mode="json"),
        "out": str(out.resolve()),
        "cache": str(cache.resolve()),
        "boards": boards,
    }
    trainable = tune.with_resources(tune.with_parameters(trial, ctx=ctx), {"cpu": spec.cpus_per_trial})
    total = len(spec.grid()) if spec.search is Search.grid else spec.samples
    if tune.Tuner.can_restore(str(path)):
        if not quiet:
            print(f"sweep: resuming {path} (finished trials are kept, not re-run)", file=sys.stderr, flush=True)
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=_param_space(spec),
            tune_config=_tune_config(spec),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            ),
        )
    with ProgressLine(out, name, total, quiet):
        grid = tuner.fit()
    records, interrupted = [], False
    for r in grid:
        m = r.metrics or {}
        if "record" in m:
            records.append(json.loads(m["record"]))
        elif r.error is not None:  # the worker died more often than max_failures allows
            cfg = normalize({k: r.config.get(k) for k in SETTING_KEYS})
            records.append(
                {
                    "setting_id": setting_id(cfg),
                    "setting": cfg,
                    "label": setting_label(cfg),
                    "ok": False,
                    "within_budget": False,
                    "exit_code": 70,
                    "error_class": type(r.error).__name__,
                    "error": f"trial failed {spec.max_failures + 1} times: {str(r.error).splitlines()[0]}",
                }
            )
        else:
            interrupted = True
    if len(grid) < total:
        interrupted = True
    return _unique(records), interrupted


def _unique(records: list[dict]) -> list[dict]:
    """Optuna may sample a setting twice: one record per setting (a measured one first), the
    repeat's measurements kept under `repeats`."""
    by_id: dict[str, dict] = {}
    for r in sorted(records, key=lambda r: not r.get("ok")):
        if r["setting_id"] in by_id:
            by_id[r["setting_id"]].setdefault("repeats", []).append(r.get("boards") or r.get("error"))
        else:
            by_id[r["setting_id"]] = r
    return list(by_id.values())


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def _param_space(spec: SweepSpec) -> dict:
    from ray import tune

    if spec.search is Search.grid:
        return {k: tune.grid_search([normalize({"v": v})["v"] for v in getattr(spec.space, k)]) for k in SETTING_KEYS}
    return {}


class DefineSpace:
    """Optuna's define-by-run space: every dimension a categorical choice. A class, not a closure:
    Tune pickles the searcher into its experiment state (what a resumed sweep reads)."""

    def __init__(self, choices: dict[str, list]) -> None:
        self.choices = choices

    def __call__(self, trial) -> None:
        for k, values in self.choices.items():
            trial.suggest_categorical(k, values)


def _tune_config(spec: SweepSpec):
    from ray import tune

    if spec.search is Search.grid:
        return tune.TuneConfig(num_samples=1, max_concurrent_trials=spec.concurrency)
    from ray.tune.search.optuna import OptunaSearch

    choices = {k: [normalize({"v": v})["v"] for v in getattr(spec.space, k)] for k in SETTING_KEYS}

    search = OptunaSearch(
        space=DefineSpace(choices), metric=list(OBJECTIVES), mode=list(OBJECTIVES.values()), seed=spec.seed
    )
    return tune.TuneConfig(search_alg=search, num_samples=spec.samples, max_concurrent_trials=spec.concurrency)
