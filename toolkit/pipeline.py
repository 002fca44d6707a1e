"""`edgeopt run`: data -> train -> prune -> PTQ -> ONNX (QDQ) -> TVM bundle -> board -> report.
Every arrow is a file in the run directory; every stage is callable on its own."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from edgeopt.compile import get_target

from edgeopt.errors import AccuracyBudgetError, InputError, UsageError

from . import original
from .boards.deploy import Connection, Deployment
from .boards.names import check_board, open_board
from .config import RunConfig
from .data import Dataset
from .inputs import check_model_spec, resolve_model, train_builtin
from .models import BUILTIN_MODELS, Model
from .onnx_run import predict
from .progress import Progress
from .prune import PruneConfig, PrunedModel
from .quantize import QuantConfig
from .report import build_report, config_hash
from .sparsity import global_sparsity_of_onnx
from .stages import compile_stage, data_stage, label_by_original, prune_stage, quantize_stage

PARITY_SAMPLES = 32
BENCH_NUMBER = 10  # at least this many calls in each of the protocol's rounds
GRAPH_FORMATS = ("onnx", "torchscript", "exported")  # converted to torch layers, BatchNorm folded


def train_model(config: RunConfig, data: Dataset) -> Model:
    return train_builtin(config.model, data, epochs=config.epochs, lr=config.lr, seed=config.seed)


def dense_model(config: RunConfig, data: Dataset) -> tuple[Model, str]:
    """A built-in model trained here, or the user's own (loaded as it is, not trained)."""
    if config.model in BUILTIN_MODELS:
        return train_model(config, data), f"built-in {config.model}, trained {config.epochs} epochs"
    return resolve_model(config.model, data, factory=config.factory, seed=config.seed)


def manifest_sparsity(pruned: PrunedModel) -> dict:
    """The pruning stage's sparsity, carried in the bundle's manifest: structured pruning removes
    weights, which a count of zeros in the compiled model cannot see."""
    doc = pruned.to_json()
    return {
        "global": doc["sparsity"]["global"],
        "method": doc["config"]["method"],
        "source": "prune.json",
        "params": doc["params"],
        "layers": [
            {
                "name": layer["name"],
                "params": layer["params_before"],
                "zeros": layer["params_before"] - layer["params_after"],
                "sparsity": layer["sparsity"],
            }
            for layer in doc["layers"]
        ],
    }


def dense_onnx(workdir: Path, dense: Model) -> Path:
    """The original dense fp32 model as ONNX (exported once into workdir/model)."""
    from .export import export_onnx

    path = workdir / "model" / "model.onnx"
    if not path.is_file():
        export_onnx(dense, path)
    return path


def _target_name(config: RunConfig) -> str:
    """--target if given; else what an emulated board runs (aarch64), else the host."""
    if "target" not in config.model_fields_set:
        from .boards.names import QEMU_KINDS
        from .boards.qemu.board import TARGET

        if config.board in QEMU_KINDS:
            return TARGET
    return config.target


def _open_board(config: RunConfig, stack: contextlib.ExitStack, progress: Progress):
    """Start or reach the run's board (closed with `stack`); its BoardSpec."""
    with progress.stage("board", f"start/connect board ({config.board})") as st:
        spec = stack.enter_context(
            open_board(config.board, local_port=config.local_port, trust_new_host=config.trust_new_host)
        )
        st["note"] = spec.address
    return spec


def run(config: RunConfig, *, progress: Progress | None = None) -> dict:
    """The whole flow; returns the report (also written to report.json in the run directory)."""
    progress = progress or Progress(quiet=True)
    # validate everything cheap before the first expensive step
    target = get_target(_target_name(config))
    prune_cfg = PruneConfig(
        target=config.sparsity,
        method=config.method,
        schedule=config.schedule,
        distill=config.distill,
        seed=config.seed,
        allow_below_70=config.allow_below_70,
        epochs_per_step=config.prune_epochs,
        final_epochs=config.final_epochs,
        lr=config.prune_lr,
        # the budget is the whole flow's: pruning may spend half of it, then
        # recovery rounds win the rest back (quantization keeps its own check)
        budget=config.budget / 2,
    )
    prune_cfg.validate()
    quant_cfg = QuantConfig(
        calibrator=config.calibrator,
        calibration_samples=config.calibration_samples,
        budget=config.budget,
        seed=config.seed,
    )
    quant_cfg.validate()
    check_model_spec(config.model)
    check_board(config.board, local_port=config.local_port)
    if config.tune and config.tune_trials == 0:
        raise UsageError(
            "--tune with --tune-trials 0 tunes nothing", hint="give --tune-trials N (N > 0), or leave out --tune"
        )
    if config.data != "digits" and not Path(config.data).is_file():
        raise InputError(f"data file not found: {config.data}", hint="pass an .npz with arrays x and y, or 'digits'")
    if config.out is not None and config.out.exists() and not config.out.is_dir():
        raise InputError(f"--out {config.out} exists and is not a directory")

    workdir = config.out or Path(tempfile.mkdtemp(prefix="edgeopt-run-"))
    try:
        return _run(config, workdir, target, prune_cfg, quant_cfg, progress)
    finally:
        if config.out is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(config, workdir: Path, target, prune_cfg, quant_cfg, progress: Progress) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        # --tune times candidates on the run's board: it is reached, checked (its kind, its TVM) and
        # its RPC server started before the first expensive step
        spec = _open_board(config, stack, progress) if config.tune else None
        tuning = stack.enter_context(contextlib.ExitStack())
        pool = None
        if config.tune:
            from .boards.tuning import board_pool

            with progress.stage("boards", f"start TVM's RPC server on board {config.board}"):
                pool = tuning.enter_context(board_pool([spec], target))
        builtin = config.model in BUILTIN_MODELS
        data = data_stage(
            config.data,
            val=config.val_data,
            test=config.test_data,
            progress=progress,
            labels=(
                f"the built-in {config.model} must be trained",
                "give y with x, or bring a trained model of your own",
            )
            if builtin
            else None,
        )

        with progress.stage(
            "train" if builtin else "model", f"train {config.model}" if builtin else f"load model ({config.model})"
        ) as st:
            dense, how = dense_model(config, data)
            if not data.labelled:  # no labels: the original model's top-1 stands in; accuracy = agreement
                data, dense.accuracy = label_by_original(data, dense)
                how += "; the data has no labels: every accuracy below is agreement with this model's top-1"
            dense.save(workdir / "model")
            st["note"] = f"{how}; accuracy {dense.accuracy:.4f} ({data.splits.get('test')})"
        if (dense.source or {}).get("format") in GRAPH_FORMATS:
            # exported graphs carry BatchNorm folded into the conv weights, so raw magnitudes are not
            # comparable across layers: one global threshold can empty whole layers (measured on the
            # MobileNetV2-style example: chance accuracy that fine-tuning cannot recover). Same ratio per layer.
            import dataclasses

            from .prune import Scope

            prune_cfg = dataclasses.replace(prune_cfg, scope=Scope.layer)

        pruned = prune_stage(dense, data, config=prune_cfg, out=workdir / "pruned", progress=progress)

        qdir = workdir / "quantized"
        quant = quantize_stage(
            pruned.model,
            data,
            config=quant_cfg,
            out=qdir,
            progress=progress,
            title="int8 quantization (PTQ first) -> QDQ ONNX",
            sparsity=manifest_sparsity(pruned),
        )
        if not quant.within_budget:
            raise AccuracyBudgetError(
                f"quantization lost more than the budget {config.budget} even after {quant.steps[-1]['name']}",
                hint=f"see {qdir / 'quant.json'} for every step; raise --budget or prune less",
            )
        sparsity_onnx = global_sparsity_of_onnx(quant.path, pruned.params_before)

        reference_x = data.x_test[:PARITY_SAMPLES]
        # reference outputs for the board: the int8 model on the host with onnxruntime
        eval_npz = workdir / "eval.npz"
        np.savez(eval_npz, x=data.x_test, y=data.y_test, ref=predict(quant.path, data.x_test))

        trials = config.tune_trials if config.tune else 0
        bundle, parity = compile_stage(
            quant.path,
            target=target,
            out=workdir / "bundle",
            progress=progress,
            title=f"TVM compile for {target.name}" + (f", tuning {trials} trials on {config.board}" if trials else ""),
            parity_inputs=reference_x,
            tune_trials=trials,
            tune_boards=pool,
            preprocessing={
                "layout": dense.spec.layout,
                "scale": dense.spec.scale,
                "mean": 0.0,
                "std": 1.0,
                **({"range": [0.0, 1.0]} if config.model in BUILTIN_MODELS else {}),
                "declared": True,
            },
            extra_manifest={
                "source": {"model": config.model, "data": config.data, "quantization": quant.quant_path},
                "config_hash": config_hash(config),
                "sparsity": manifest_sparsity(pruned),
            },
        )
        # the user's starting point travels with the bundle: the board times it beside the bundle
        bundle = original.attach(bundle, dense_onnx(workdir, dense), source=config.model)

        if config.variants:  # the run's bundle becomes pruned-int8; the others are built beside it
            from . import variants

            bundle = variants.adopt(bundle, workdir, dense=dense, pruned=pruned, quant=quant)
            variants.build(
                workdir,
                target=target,
                dense=dense,
                pruned=pruned,
                quant=quant,
                parity_inputs=reference_x,
                tune_trials=config.tune_trials,
                done={"pruned-int8": bundle},
                stage=progress.stage,
                trials_bar=progress.trials,
                tune_boards=pool,
                preprocessing=bundle.manifest.get("preprocessing"),
            )
        tuning.close()  # the board's RPC server stops before the bundle is deployed

        if spec is None:
            spec = _open_board(config, stack, progress)
        conn = stack.enter_context(Connection(spec))
        with progress.stage("deploy", "deploy agent + bundle over SFTP"):
            dep = Deployment(conn, bundle).upload()
        stack.callback(dep.cleanup)
        threads = ["--threads", str(config.threads)] if config.threads else []
        with progress.stage("eval", "accuracy + parity on the board") as st:
            remote_data = dep.put(eval_npz)
            evaluation = dep.agent("eval", "--bundle", str(dep.bundle_dir), "--data", str(remote_data), *threads)
            st["note"] = f"accuracy {evaluation['accuracy']:.4f}"
        with progress.stage("bench", "latency on the board") as st:
            from .boards.ops import measure

            # a real test sample as the input; parity was the eval stage's
            bench = measure(
                dep,
                x=data.x_test[:1],
                ref=None,
                no_parity_reason="see the eval stage's parity",
                warmup=config.warmup,
                repeat=config.repeat,
                number=BENCH_NUMBER,
                min_repeat_ms=config.min_repeat_ms,
                threads=[config.threads],
                baseline="original",
                keep_samples=True,
            )[0]
            vs = original.verdict(
                p50_ms=bench["latency_ms"]["p50"],
                original=bench.get("original"),
                levers=original.levers_for(bundle.manifest),
            )
            st["note"] = (
                f"p50 {bench['latency_ms']['p50']:.4f} ms, {bench['latency_ms']['runs']} runs; " + original.describe(vs)
            )

        result = {"board_kind": spec.kind, "emulated": spec.kind.startswith("qemu"), "eval": evaluation, "bench": bench}
        (workdir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        report = build_report(
            config=config,
            dense=dense,
            pruned=pruned,
            quant=quant,
            sparsity_onnx=sparsity_onnx,
            bundle=bundle,
            host_parity=parity,
            result=result,
            timings=progress.timings,
            splits=data.splits,
        )
        (workdir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        return report
