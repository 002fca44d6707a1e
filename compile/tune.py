"""MetaSchedule tuning, with the tuning database cached by model + target (+ the board kind when
the candidates are timed on boards: compile/remote.py).

TVM's documented `static_shape_tuning` pipeline times out here: every fresh builder worker imports
`tvm.s_tir.tensor_intrin` (~40 s, mostly its CUDA part). Tuning the extracted tasks with a
builder that skips that import (`_fast_build`), then `MetaScheduleApplyDatabase`, works."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Iterator

from edgeopt import paths
from edgeopt.errors import BoardError, UsageError

from .targets import Target


def cache_root() -> Path:
    return paths.cache_dir() / "tuning"


def cache_key(onnx_bytes: bytes, target_spec: dict, variant: str = "") -> str:
    """`variant` names how the module was lowered before tuning (e.g. the int8 rewrite)."""
    h = hashlib.sha256(onnx_bytes)
    h.update(json.dumps(target_spec, sort_keys=True).encode())
    # "round-robin/" is the key's old salt, kept so cached databases stay found; the budget
    # scheme is named in target_spec ("budget": "tiered")
    h.update(f"round-robin/{variant}".encode())
    return h.hexdigest()[:24]


def _fast_build(mod, target, _params):
    # default_build without `import tvm.s_tir.tensor_intrin` (see the module docstring)
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def _export(cc: str | None, mod) -> str:
    """A candidate as a shared library, linked by the target's compiler (a cross compiler for a
    board of another architecture); MetaSchedule's default (a .tar) needs a compiler on the board."""
    import os
    import tempfile

    from tvm.support import cc as tvm_cc

    path = os.path.join(tempfile.mkdtemp(prefix="edgeopt-candidate-"), "candidate.so")
    mod.export_library(path, **({"fcompile": tvm_cc.cross_compiler(cc)} if cc else {}))
    return path


def _scheduled_count(mod) -> int:
    """Functions marked scheduled (MetaScheduleApplyDatabase marks those it took from the records)."""
    return sum(
        1
        for _, f in mod.functions_items()
        if f.attrs and any(f.attrs.get(k, False) for k in ("tir.is_scheduled", "tirx.is_scheduled"))
    )


def _progress_callback(on_trials: Callable[[int], None]):
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class Progress(PyMeasureCallback):
        def __init__(self) -> None:
            self.done = 0

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
            self.done += len(measure_candidates)
            on_trials(self.done)

    return Progress()


LOGGER = "tvm.s_tir.meta_schedule"


@contextlib.contextmanager
def _logs_to_files() -> Iterator[None]:
    """MetaSchedule's log lines go to its files under <database>/logs, none to the terminal.

    Each tune_tasks call re-creates MetaSchedule's loggers with a console handler at the level
    its root logger has at that moment (DEBUG when unset: thousands of lines on stdout). Set to
    CRITICAL just before, the console passes nothing it logs short of a crash (which raises
    anyway); its file handlers still take every line at DEBUG."""
    root = logging.getLogger(LOGGER)
    before = root.level
    root.setLevel(logging.CRITICAL)
    # MetaSchedule lists the logger's handlers by name in its dictConfig; an unnamed one (left by
    # a log capture or an earlier in-process run) makes it fail with "'NoneType' ... 'format'"
    unnamed = [h for h in root.handlers if h.get_name() is None]
    for h in unnamed:
        root.removeHandler(h)
    try:
        yield
    finally:
        root.setLevel(before)
        for h in unnamed:
            root.addHandler(h)


def log_dir(database: str) -> Path:
    """Where MetaSchedule's logs for a tuning database are (named in the output and the manifest)."""
    return cache_root() / database / "logs"


def _scheduled(mod) -> bool:
    return any(bool(f.attrs and f.attrs.get("tir.is_scheduled", False)) for _, f in mod.functions_items())


HEAVY = 0.05  # a task with this share of the model's floating-point work or more is "heavy"


def budget(tasks, trials: int) -> list[tuple[list, int]]:
    """Split `trials` into (tasks, trials each) tiers: three quarters evenly to the heavy tasks
    (convolutions, matmuls: where the time goes), the rest evenly to the others while it gives
    each at least one; with too small a budget for that, only the heavy ones are tuned (the
    others keep their default schedules). Never more than `trials` in all."""
    from tvm.s_tir.analysis import estimate_tir_flops

    if not tasks:
        return []
    work = []
    for t in tasks:
        try:
            work.append(float(estimate_tir_flops(t.dispatched[0])) * t.weight)
        except Exception:  # an op it cannot count: not a heavy one
            work.append(0.0)
    total = sum(work) or 1.0
    heavy = [t for t, w in zip(tasks, work) if w >= HEAVY * total]
    light = [t for t, w in zip(tasks, work) if w < HEAVY * total]
    if not heavy:
        return [(light, max(1, trials // len(light)))]
    rest = trials // 4 if light else 0
    if light and rest < len(light):
        rest = 0
    tiers = [(heavy, max(1, (trials - rest) // len(heavy)))]
    if rest:
        tiers.append((light, rest // len(light)))
    return tiers


def tune(
    mod,
    tvm_target,
    *,
    target: Target,
    onnx_bytes: bytes,
    trials: int,
    variant: str = "",
    threads: int = 1,
    on_trials: Callable[[int], None] | None = None,
    boards=None,
) -> tuple[object, dict]:
    """Return `mod` with the best schedules found applied, and what was done for the manifest.

    `trials` is the whole budget, split by `budget` into tiers, heavy tasks first; each tier is
    tuned round-robin with a per-task cap: MetaSchedule's gradient scheduler spends a small
    budget on the first few tasks and leaves the others with no schedule at all, and an
    unscheduled conv2d runs tens of times slower than a tuned one.

    `boards`: a started compile.remote.BoardPool: candidates are built here (cross-compiled for
    an Arm target) and timed on those boards through TVM's RPC tracker; the boards' identity is
    part of the records' key. None: built and timed on this machine (host targets only)."""
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    if target.cc is not None and boards is None:
        raise UsageError(
            f"tuning for {target.name!r} needs a board of that kind to time candidates",
            hint="name it: --board NAME (repeat --board, or name a [groups] entry, for a farm; see docs/targets.md)",
        )
    if trials < 1:
        raise UsageError(f"--trials must be >= 1, got {trials}")
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks, extracted_tasks_to_tune_contexts
    from tvm.s_tir.meta_schedule.tune import tune_tasks

    spec = {**target.tvm_target(), "num-cores": threads, "budget": "tiered"}
    if boards is not None:  # records measured on one board kind are never applied to another
        spec["board"] = boards.identity
    key = cache_key(onnx_bytes, spec, variant)
    work = cache_root() / key
    meta_path = work / "edgeopt.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    reused = meta.get("trials", 0) >= trials
    if not reused:
        work.mkdir(parents=True, exist_ok=True)
        callbacks = ms.measure_callback.MeasureCallback.create("default")
        if on_trials is not None:
            callbacks = [*callbacks, _progress_callback(on_trials)]
        # functions scheduled by hand (compile/kernels/) are not MetaSchedule's to tune
        selected = [t for t in extract_tasks(mod, tvm_target) if not _scheduled(t.mod)]
        tasks = len(selected)
        tiers = budget(selected, trials)
        # for boards: each candidate exported as a .so by the target's (cross) compiler
        export = {} if boards is None else {"f_export": functools.partial(_export, target.cc)}
        builder = ms.builder.LocalBuilder(f_build=_fast_build, timeout_sec=120, max_workers=1, **export)
        runner = "local" if boards is None else boards.runner()
        for group, per_task in tiers:
            with _logs_to_files():  # both calls below set up MetaSchedule's loggers
                contexts, weights = extracted_tasks_to_tune_contexts(
                    extracted_tasks=group, work_dir=str(work), space="post-order-apply", strategy="evolutionary", seed=0
                )
                tune_tasks(
                    tasks=contexts,
                    task_weights=weights,
                    work_dir=str(work),
                    max_trials_global=per_task * len(group),
                    max_trials_per_task=per_task,
                    num_trials_per_iter=min(16, per_task),
                    task_scheduler="round-robin",
                    builder=builder,
                    runner=runner,
                    database="json",
                    cost_model="xgb",
                    measure_callbacks=callbacks,
                )
        meta = {
            "trials": trials,
            "tasks": tasks,
            "trials_per_task": [p for _, p in tiers],
            "tuned_tasks": sum(len(g) for g, _ in tiers),
            "threads": threads,
            "target": target.tvm_target(),
        }
        if boards is not None:
            measured = boards.report()
            if not any(b["measured"] for b in measured):
                raise BoardError(
                    f"no board measured a candidate ({', '.join(b['name'] for b in measured)}); nothing was recorded",
                    hint="check the boards with `edgeopt board doctor`; MetaSchedule's log: " + str(log_dir(key)),
                )
            meta["board"] = boards.identity
            meta["measured_on"] = measured
        meta_path.write_text(json.dumps(meta))
    # the database opened here, not by the pass from a work_dir (which logs a C++ warning to the terminal)
    database = ms.database.JSONDatabase(work_dir=str(work), module_equality="structural")
    with tvm_target, database, tvm.transform.PassContext(opt_level=3):
        tuned = relax.transform.MetaScheduleApplyDatabase()(mod)
    info = {
        "trials": meta["trials"],
        "tasks": meta.get("tasks"),
        "tuned_tasks": meta.get("tuned_tasks"),
        "trials_per_task": meta.get("trials_per_task"),
        "threads": threads,
        "database": key,
        "reused": reused,
        "log": str(log_dir(key)),
        # functions whose schedule came from the records
        "applied": _scheduled_count(tuned) - _scheduled_count(mod),
    }
    if boards is not None:
        info["board"] = boards.identity
        info["measured_on"] = meta.get("measured_on") if reused else boards.report()
    return tuned, info
