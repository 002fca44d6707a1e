"""The bundle's manifest.json, assembled from a finished compile (steps.CompileState). Its
schema is compile.bundle.SCHEMA; the `arithmetic.int8_ops` block is compile.int8.Int8Stats."""

from __future__ import annotations

import hashlib
import json


def toolchain_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("apache-tvm", "apache-tvm-ffi", "onnx", "onnxruntime", "torch"):
        try:
            out[dist.replace("apache-", "")] = version(dist)
        except PackageNotFoundError:
            out[dist.replace("apache-", "")] = None
    return out


def build_config(s) -> dict:
    """What the build depends on; its hash is the manifest's build.config_hash."""
    r = s.request
    return {
        "onnx_sha256": hashlib.sha256(r.onnx_path.read_bytes()).hexdigest(),
        "target": r.target.tvm_target(),
        "input_shapes": s.shapes,
        "tune_trials": r.tune_trials,
        **({"tune_threads": r.tune_threads} if r.tune_trials else {}),
        "integer": r.integer,
        "tolerance": s.tolerance,
    }


def manifest(s) -> dict:
    from .steps import EXEC_MODE

    r = s.request
    build = build_config(s)
    # cross-compiled: checked on the board against the host's references
    parity = {
        "tolerance": s.tolerance,
        "checked_on": "board" if s.parity is None else "host",
        **({} if s.parity is None else s.parity.to_json()),
    }
    return {
        "preprocessing": {
            "layout": "NCHW" if len(next(iter(s.shapes.values()))) == 4 else "NC",
            "scale": 1.0,
            "mean": 0.0,
            "std": 1.0,
            "declared": False,
            **(r.preprocessing or {}),
        },
        "build": {"config_hash": hashlib.sha256(json.dumps(build, sort_keys=True).encode()).hexdigest()[:16], **build},
        "inputs": [{"name": k, "shape": v, "dtype": "float32"} for k, v in s.shapes.items()],
        "outputs": [
            {
                "name": o.name,
                "dtype": "float32",
                "shape": s.out_shapes[i]
                if s.out_shapes and i < len(s.out_shapes)
                else [d.dim_value for d in o.type.tensor_type.shape.dim],
            }
            for i, o in enumerate(s.model.graph.output)
        ],
        "target": r.target.describe(),
        "toolchain": toolchain_versions(),
        "tuning": s.tuning,
        "arithmetic": {"int8_ops": None if s.int8 is None else s.int8.to_json(), "weight_bytes": s.weight_bytes},
        "parity": parity,
        # compiled VM code has no per-call hook: the board agent profiles kernel by kernel from this
        "vm": {"exec_mode": EXEC_MODE, "kernels": s.kernels},
        **(r.extra_manifest or {}),
    }
