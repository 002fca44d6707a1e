"""Non-uniform quantization: k-means weight sharing (Han et al., Deep Compression). Each layer's
weights take one of 2**bits shared values; zeros (pruned weights) stay exact zeros."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .ort_ptq import QUANTIZABLE


def share_weights(src: Path, out: Path, *, bits: int, seed: int = 0) -> tuple[Path, dict]:
    import onnx
    from onnx import numpy_helper
    from sklearn.cluster import KMeans

    model = onnx.load(str(src))
    inits = {i.name: i for i in model.graph.initializer}
    weights = {n.input[1] for n in model.graph.node if n.op_type in QUANTIZABLE and len(n.input) > 1} & set(inits)
    clusters = 2**bits
    stored_bits = 0
    for name in sorted(weights):
        w = numpy_helper.to_array(inits[name]).astype(np.float32)
        nz = w != 0
        values = w[nz].reshape(-1, 1)
        k = min(clusters - 1, len(np.unique(values)))  # one code is reserved for zero
        if k >= 1:
            km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(values)
            shared = w.copy()
            shared[nz] = km.cluster_centers_[km.labels_, 0]
            inits[name].CopyFrom(numpy_helper.from_array(shared.astype(np.float32), name))
        stored_bits += w.size * bits + clusters * 32  # indices + codebook
    onnx.save(model, str(out))
    return out, {"layers": len(weights), "clusters_per_layer": clusters, "weight_bytes_shared": stored_bits // 8}
