"""`edgeopt run --variants`: the bundles an engineer compares to decide how far to go, side by side
in the run directory, each one a subdirectory with a manifest.json (what `edgeopt bench DIR` takes):

    dense-fp32/   pruned-fp32/   pruned-int8/            TVM's default schedules
    dense-fp32-tuned/ pruned-fp32-tuned/ pruned-int8-tuned/   MetaSchedule, --tune-trials in all

Each manifest carries a `variant` block: name, precision, pruned, the host accuracy of the model it
was built from, and per-layer sparsity (from the pruning report), for the bench report's plots."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from edgeopt.compile import Bundle, compile_onnx

VARIANTS = ("dense-fp32", "pruned-fp32", "pruned-int8")


def _label(layer: dict) -> str:
    shape = "x".join(str(d) for d in layer.get("shape_before", []))
    return f"{layer['name']} ({layer.get('kind', '?')} {shape})"


def variant_info(name: str, *, dense, pruned, quant) -> dict:
    layers = pruned.to_json()["layers"]
    if name.startswith("dense"):
        rows = [
            {
                "name": layer["name"],
                "label": _label(layer),
                "params": layer["params_before"],
                "zeros": 0,
                "sparsity": 0.0,
            }
            for layer in layers
        ]
        acc = dense.accuracy
    else:
        rows = [
            {
                "name": layer["name"],
                "label": _label(layer),
                "params": layer["params_before"],
                "zeros": round(layer["sparsity"] * layer["params_before"]),
                "sparsity": layer["sparsity"],
            }
            for layer in layers
        ]
        acc = quant.accuracy_quantized if "int8" in name else pruned.accuracy_after
    total = sum(r["params"] for r in rows)
    return {
        "name": name,
        "precision": "int8" if "int8" in name else "fp32",
        "pruned": not name.startswith("dense"),
        "accuracy": acc,
        "accuracy_on": "host, test split",
        "tuned": name.endswith("-tuned"),
        "sparsity": sum(r["zeros"] for r in rows) / total if total else 0.0,
        "layers": rows,
    }


def sources(workdir: Path, *, dense, quant) -> dict[str, Path]:
    """The ONNX each variant is compiled from: dense and pruned fp32 exports, the int8 QDQ model."""
    from .pipeline import dense_onnx

    return {
        "dense-fp32": dense_onnx(workdir, dense),
        "pruned-fp32": quant.path.parent / "model.onnx",
        "pruned-int8": quant.path,
    }


def build(
    workdir: Path,
    *,
    target,
    dense,
    pruned,
    quant,
    parity_inputs: np.ndarray,
    tune_trials: int,
    done: dict[str, Bundle] | None = None,
    stage: Callable | None = None,
    extra_manifest: dict | None = None,
    on_trials: Callable[[int], None] | None = None,
    preprocessing: dict | None = None,
    trials_bar: Callable | None = None,
    tune_boards=None,
) -> dict[str, Bundle]:
    """Compile every variant not in `done` into workdir/<name>; tuned ones only if tune_trials > 0.
    `stage(name, description)` is a context manager (progress), or None; `trials_bar(total)` one
    yielding a tuning-progress callback (Progress.trials), or None; `tune_boards`: a started
    compile.remote.BoardPool the tuned variants are timed on (else this machine)."""
    import contextlib

    bundles = dict(done or {})
    src = sources(workdir, dense=dense, quant=quant)
    names = list(VARIANTS) + ([f"{v}-tuned" for v in VARIANTS] if tune_trials > 0 else [])
    for name in names:
        if name in bundles:
            continue
        base = name.removesuffix("-tuned")
        ctx = (
            stage(
                f"variant {name}",
                f"TVM compile {name}" + (f" (tuning, {tune_trials} trials)" if name.endswith("-tuned") else ""),
            )
            if stage
            else contextlib.nullcontext({})
        )
        tuned = name.endswith("-tuned")
        bar = trials_bar(tune_trials) if trials_bar and tuned else contextlib.nullcontext(None)
        with ctx as st, bar as on_bar:
            bundle, _ = compile_onnx(
                src[base],
                target=target,
                out_dir=workdir / name,
                parity_inputs=parity_inputs,
                onnx_copy=True,
                tune_trials=tune_trials if tuned else 0,
                on_trials=(on_bar or on_trials) if tuned else None,
                tune_boards=tune_boards if tuned else None,
                extra_manifest={
                    **(extra_manifest or {}),
                    "variant": variant_info(name, dense=dense, pruned=pruned, quant=quant),
                },
                **({"preprocessing": preprocessing} if preprocessing else {}),
            )
            if isinstance(st, dict):
                tuning = bundle.manifest.get("tuning")
                st["note"] = f"{bundle.bytes:,} bytes" + (
                    f", tuning database {'reused' if tuning['reused'] else 'built'}, "
                    f"MetaSchedule's log: {tuning['log']}"
                    if tuning
                    else ""
                )
        bundles[name] = bundle
    return bundles


def adopt(bundle: Bundle, workdir: Path, *, dense, pruned, quant) -> Bundle:
    """The run's own bundle (the pruned int8 model, untuned) becomes the pruned-int8 variant: moved
    to workdir/pruned-int8 with the variant block added to its manifest (re-hashed)."""
    import shutil

    dest = workdir / "pruned-int8"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.move(str(bundle.path), str(dest))
    if not (dest / "model.onnx").is_file():  # for the onnxruntime baseline on the board
        shutil.copyfile(quant.path, dest / "model.onnx")
    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("schema", "files")}
    manifest["variant"] = variant_info("pruned-int8", dense=dense, pruned=pruned, quant=quant)
    return Bundle.write(dest, manifest)
