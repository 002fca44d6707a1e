"""BUNDLE arguments -> named variants. A BUNDLE is a bundle directory (it has manifest.json) or a
directory of bundles (each subdirectory with a manifest.json is one, e.g. `edgeopt run --variants
--out DIR`). Per-layer sparsity comes from the manifest's `variant` block when the bundle was
built by `edgeopt run --variants`, else it is counted from the bundle's model.onnx."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeopt.compile import Bundle

from edgeopt.errors import BundleError, UsageError

from ..original import levers_for

MANIFEST = "manifest.json"
ONNX_IN_BUNDLE = "model.onnx"
# the order `edgeopt run --variants` builds them in: the report lists them so
ORDER = ["dense-fp32", "pruned-fp32", "pruned-int8", "dense-fp32-tuned", "pruned-fp32-tuned", "pruned-int8-tuned"]


@dataclass
class Variant:
    name: str
    bundle: Bundle

    @property
    def info(self) -> dict:
        return self.bundle.manifest.get("variant", {})

    def describe(self) -> dict:
        """What the report says about the bundle itself (no board involved)."""
        m = self.bundle.manifest
        tuning = m.get("tuning")
        info = self.info
        carried = m.get("sparsity") or {}  # the pruning stage's, when the bundle came from one
        layers = info.get("layers") or carried.get("layers") or onnx_layers(self.bundle)
        return {
            "name": self.name,
            "path": str(self.bundle.path),
            "bundle_id": self.bundle.id,
            "bytes": self.bundle.bytes,
            "library_bytes": self.bundle.files["model.so"]["bytes"],
            "target": m.get("target", {}).get("name"),
            "precision": info.get("precision") or _precision(self.bundle),
            "pruned": info.get("pruned"),
            "tuned": bool(tuning),
            "tuning_trials": tuning.get("trials") if tuning else None,
            "host_accuracy": info.get("accuracy"),
            "original": m.get("original"),  # the user's original dense fp32 model, if the bundle carries it
            "levers": levers_for(m),  # what would make it faster, named when it is slower than the original
            "sparsity": {
                "global": info.get("sparsity", carried.get("global", _global(layers))),
                "layers": layers,
                "source": "manifest (edgeopt run --variants)"
                if info.get("layers")
                else "manifest (the pruning stage's prune.json)"
                if carried.get("layers")
                else (
                    f"zero weights counted in the bundle's {ONNX_IN_BUNDLE}"
                    if layers
                    else "unknown: no model.onnx in the bundle"
                ),
            },
        }


def _precision(bundle: Bundle) -> str | None:
    if ONNX_IN_BUNDLE not in bundle.files:
        return None
    import onnx

    model = onnx.load(str(bundle.path / ONNX_IN_BUNDLE), load_external_data=False)
    return "int8" if any(n.op_type == "DequantizeLinear" for n in model.graph.node) else "fp32"


def onnx_layers(bundle: Bundle) -> list[dict]:
    """[{name, params, zeros, sparsity}] for the weights of Gemm/MatMul/Conv in model.onnx."""
    if ONNX_IN_BUNDLE not in bundle.files:
        return []
    from ..sparsity import onnx_weight_counts

    out = []
    for name, (n, nz) in onnx_weight_counts(bundle.path / ONNX_IN_BUNDLE).items():
        out.append({"name": _short(name), "params": n, "zeros": n - nz, "sparsity": (n - nz) / n if n else 0.0})
    return out


def _short(initializer: str) -> str:
    for suffix in ("_quantized", ".weight", "_weight"):
        initializer = initializer.replace(suffix, "")
    return initializer


def _global(layers: list[dict]) -> float | None:
    total = sum(layer.get("params", 0) for layer in layers)
    return sum(layer.get("zeros", 0) for layer in layers) / total if total else None


def _sort_key(v: Variant) -> tuple:
    return (ORDER.index(v.name) if v.name in ORDER else len(ORDER), v.name)


def expand(paths: list[Path]) -> list[Variant]:
    """Each path: a bundle, or a directory whose subdirectories with a manifest.json are bundles."""
    if not paths:
        raise UsageError("name at least one BUNDLE (a bundle directory or a directory of bundles)")
    found: list[Variant] = []
    for p in paths:
        if not p.exists():
            raise BundleError(
                f"bundle not found: {p}",
                hint="pass a bundle directory (edgeopt compile --out) "
                "or a directory of bundles (edgeopt run --variants --out)",
            )
        if (p / MANIFEST).is_file():
            b = Bundle.load(p)
            found.append(Variant(b.manifest.get("variant", {}).get("name") or p.resolve().name, b))
            continue
        subs = sorted(d for d in p.iterdir() if d.is_dir() and (d / MANIFEST).is_file()) if p.is_dir() else []
        if not subs:
            raise BundleError(
                f"{p} is neither a bundle nor a directory of bundles: no {MANIFEST} in it or its subdirectories",
                hint="edgeopt compile --out DIR makes a bundle; edgeopt run --variants --out DIR a directory of them",
            )
        group = []
        for d in subs:
            b = Bundle.load(d)
            group.append(Variant(b.manifest.get("variant", {}).get("name") or d.name, b))
        found.extend(sorted(group, key=_sort_key))
    names: dict[str, int] = {}
    for v in found:  # the same name twice (two dirs called `bundle`): number them
        names[v.name] = names.get(v.name, 0) + 1
    seen: dict[str, int] = {}
    for v in found:
        if names[v.name] > 1:
            seen[v.name] = seen.get(v.name, 0) + 1
            v.name = f"{v.name}-{seen[v.name]}"
    return found


def default_eval_data(paths: list[Path]) -> Path | None:
    """A directory of bundles made by `edgeopt run --variants --out DIR` holds DIR/eval.npz (the
    labelled test split): used for accuracy on the board when --data is not given."""
    for p in paths:
        if p.is_dir() and not (p / MANIFEST).is_file() and (p / "eval.npz").is_file():
            return p / "eval.npz"
    return None
