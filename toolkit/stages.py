"""The stages as `edgeopt run` (pipeline.py) and the single-stage commands run them: each shows
its progress, makes its artifact and writes it, the same way from either (compile too: the CLI
reaches compile/ only through compile_stage)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edgeopt.errors import InputError

from .data import Dataset, load_dataset
from .progress import Progress
from .prune import PruneConfig, PrunedModel, prune
from .quantize import QuantConfig, QuantizedModel, quantize


def data_stage(
    data: str, *, val: Path | None, test: Path | None, progress: Progress, labels: tuple[str, str] | None = None
) -> Dataset:
    """Load the data set; `labels`: (why this stage needs labels, the hint), checked here."""
    with progress.stage("data", f"load data ({data})") as st:
        dataset = load_dataset(data, val=val, test=test)
        st["note"] = (
            f"samples {tuple(dataset.input_shape[1:])}, {len(dataset.x_train)} train / "
            f"{len(dataset.x_val)} val / {len(dataset.x_test)} test"
        )
        if labels and not dataset.labelled:
            why, hint = labels
            raise InputError(f"{data} has no labels: {why}", hint=hint)
    return dataset


def label_by_original(data: Dataset, dense) -> tuple[Dataset, float]:
    """Unlabelled data for a model of the user's: the model's own top-1 as labels (validation and
    test carved out as for labelled data); returns the set and the model's agreement on its test
    split (1.0). Every later accuracy is agreement with the original model, and the splits say so."""
    from .data import label_with
    from .train import evaluate, predict

    labelled = label_with(data, lambda x: predict(dense.module.eval(), x).argmax(-1), source="the original model")
    return labelled, evaluate(dense.module, labelled.x_test, labelled.y_test)


def prune_stage(
    dense,
    data: Dataset,
    *,
    config: PruneConfig,
    out: Path,
    progress: Progress,
    on_step: Callable[[dict], None] | None = None,
    transfer: dict | None = None,
) -> PrunedModel:
    """Prune `dense` (a Model) and write the artifact (pruned.pt, spec.json, prune.json) to `out`."""
    with progress.stage(
        "prune", f"prune to {config.target:.0%} ({config.method.value}, {config.schedule.value})"
    ) as st:
        pruned = prune(dense, data, config=config, on_step=on_step)
        pruned.transfer = transfer
        pruned.save(out)
        st["note"] = f"sparsity {pruned.global_sparsity:.4f}, accuracy {pruned.accuracy_after:.4f}"
    return pruned


def quantize_stage(
    source,
    data: Dataset,
    *,
    config: QuantConfig,
    out: Path,
    progress: Progress,
    title: str,
    on_step: Callable[[dict], None] | None = None,
    sparsity: dict | None = None,
) -> QuantizedModel:
    """Quantize `source` (a Model, or an ONNX file: PTQ only) and write the artifact (the float and
    quantized ONNX, quant.json) to `out`; `sparsity`: the pruning stage's, carried on in quant.json."""
    with progress.stage("quantize", title) as st:
        quant = quantize(source, data, config=config, out_dir=out, on_step=on_step, sparsity=sparsity)
        st["note"] = (
            f"path {quant.quant_path}, accuracy {quant.accuracy_float:.4f} -> {quant.accuracy_quantized:.4f}"
            if quant.accuracy_quantized is not None
            else "calibrated on unlabelled data: no accuracy"
        )
    return quant


def compile_stage(onnx: Path, *, target, out: Path, progress: Progress, title: str, tune_trials: int = 0, **options):
    """Compile `onnx` with TVM into the bundle `out` (compile/: validation, lowering, tuning, link,
    host parity, manifest); returns (Bundle, host parity or None). `options`: compile_onnx's."""
    from edgeopt.compile import compile_onnx

    with progress.stage("compile", title) as st:
        with progress.trials(tune_trials) as on_trials:
            bundle, parity = compile_onnx(
                onnx, target=target, out_dir=out, tune_trials=tune_trials, on_trials=on_trials, **options
            )
        tuning = bundle.manifest.get("tuning")
        st["note"] = (
            f"{bundle.bytes:,} bytes"
            + (f", host parity max|diff| {parity.max_abs_diff:.2g}" if parity else "")
            + (
                f", tuning database {'reused' if tuning['reused'] else 'built'} ({tuning['trials']} trials, "
                f"{tuning.get('kept', 'tuned')} build kept; MetaSchedule's log: {tuning['log']})"
                if tuning
                else ""
            )
        )
        if tuning and tuning.get("measured_on"):
            st["note"] += "; measured on " + ", ".join(f"{b['name']} ({b['measured']})" for b in tuning["measured_on"])
    return bundle, parity
