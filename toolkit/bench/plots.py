"""The report's pictures, drawn with matplotlib's Agg backend (no display needed):

- latency.png: per board, the distribution of per-call latency as a box per variant (box p25-p75
  with the median, whiskers p1-p99), the TVM bundle filled in the variant's colour and its
  onnxruntime baseline on the same board hatched just below it;
- accuracy_latency.png: per board, accuracy on the board vs p50 latency, one marker per variant
  (the bar reaches from p50 to p90);
- sparsity.png: per-layer sparsity, one bar group per layer, one bar per variant.

`plots.json` beside them lists every plot's series (variant, engine, board), so that a test or a
script can check what a picture shows without reading pixels."""

from __future__ import annotations

import json
from pathlib import Path

FILES = {"latency": "latency.png", "accuracy_latency": "accuracy_latency.png", "sparsity": "sparsity.png"}


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _colors(names: list[str]) -> dict[str, str]:
    palette = [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#7f7f7f",
        "#bcbd22",
        "#17becf",
    ]
    return {n: palette[i % len(palette)] for i, n in enumerate(names)}


def figures(doc: dict) -> dict[str, tuple[object, list[dict]]]:
    """{plot name: (matplotlib Figure, [series...])}; each series is {label, variant, engine, board}."""
    plt = _mpl()
    import numpy as np
    from matplotlib.ticker import FormatStrFormatter

    names = [v["name"] for v in doc["variants"]]
    color = _colors(names)
    boards = [b for b in doc["boards"] if b["ok"]] or [None]
    out: dict = {}

    # latency distribution: one row per variant, the TVM bundle's box and, below it, onnxruntime's
    fig, axes = plt.subplots(1, len(boards), figsize=(6.5 * len(boards), 1.0 + 0.75 * len(names)), squeeze=False)
    series = []
    for ax, b in zip(axes[0], boards):
        if b is None:
            ax.text(0.5, 0.5, "no board succeeded", ha="center", va="center", transform=ax.transAxes)
            continue
        rows, labels, lo, hi = [], [], [], []
        for i, n in enumerate(names):
            r = b["results"].get(n)
            if not r or not r["tvm"].get("samples_ms"):
                continue
            y = len(names) - i
            data = np.asarray(r["tvm"]["samples_ms"])
            bp = ax.boxplot(
                [data],
                positions=[y + 0.17],
                orientation="horizontal",
                widths=0.3,
                whis=(1, 99),
                showfliers=False,
                patch_artist=True,
                manage_ticks=False,
            )
            for patch in bp["boxes"]:
                patch.set(facecolor=color[n], alpha=0.85, label=n)
            series.append({"label": n, "variant": n, "engine": "tvm", "board": b["name"]})
            lo.append(np.percentile(data, 1))
            hi.append(np.percentile(data, 99))
            ort = r.get("ort") or {}
            if ort.get("available") and ort.get("samples_ms"):
                data = np.asarray(ort["samples_ms"])
                bp = ax.boxplot(
                    [data],
                    positions=[y - 0.17],
                    orientation="horizontal",
                    widths=0.3,
                    whis=(1, 99),
                    showfliers=False,
                    patch_artist=True,
                    manage_ticks=False,
                )
                for patch in bp["boxes"]:
                    patch.set(facecolor="white", edgecolor=color[n], hatch="///", label=f"{n} (onnxruntime)")
                series.append(
                    {"label": f"{n} (onnxruntime)", "variant": n, "engine": "onnxruntime", "board": b["name"]}
                )
                lo.append(np.percentile(data, 1))
                hi.append(np.percentile(data, 99))
            rows.append(y)
            labels.append(n)
        ax.set_yticks(rows)
        ax.set_yticklabels(labels, fontsize=8)
        if lo and max(hi) / max(min(lo), 1e-9) > 8:
            ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(FormatStrFormatter(""))
        ax.set_xlabel("latency per inference on the board (ms)")
        ax.set_title(
            f"{b['name']}: per-call latency, {b['threads']} threads"
            + (" [shares CPU]" if b.get("shares_cpu_with") else ""),
            fontsize=10,
        )
        ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.suptitle(
        "Box: p25-p75 with the median; whiskers: p1-p99. Filled = TVM bundle, hatched = onnxruntime (same board)",
        fontsize=8,
    )
    fig.tight_layout()
    out["latency"] = (fig, series)

    # accuracy vs latency
    fig, axes = plt.subplots(1, len(boards), figsize=(6.5 * len(boards), 4.5), squeeze=False)
    series = []
    for ax, b in zip(axes[0], boards):
        if b is None:
            continue
        p50s = []
        for n in names:
            r = b["results"].get(n)
            if not r:
                continue
            lat = r["tvm"]["latency_ms"]
            acc = r["tvm"].get("accuracy")
            if acc is None:
                acc = next(v.get("host_accuracy") for v in doc["variants"] if v["name"] == n)
            if acc is None:
                continue
            ax.errorbar(
                [lat["p50"]],
                [acc],
                xerr=[[0.0], [lat["p90"] - lat["p50"]]],
                fmt="o",
                ms=8,
                capsize=3,
                color=color[n],
                label=n,
            )
            ax.annotate(
                n,
                (lat["p50"], acc),
                textcoords="offset points",
                xytext=(4, 6 + 7 * (names.index(n) % 3)),
                fontsize=7,
                color=color[n],
            )
            series.append({"label": n, "variant": n, "engine": "tvm", "board": b["name"]})
            p50s.append(lat["p50"])
        if p50s and max(p50s) / max(min(p50s), 1e-9) > 8:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(FormatStrFormatter(""))
        ax.set_xlabel("latency p50 on the board (ms; bar to p90)")
        ax.set_ylabel("top-1 accuracy on the board")
        ax.set_title(f"{b['name']}: accuracy vs latency (up and left is better)", fontsize=10)
        ax.grid(True, alpha=0.3)
        if series:
            ax.legend(fontsize=7)
    fig.tight_layout()
    out["accuracy_latency"] = (fig, series)

    # per-layer sparsity
    layers: list[str] = []
    ticks: dict[str, str] = {}
    for v in doc["variants"]:
        for layer in v["sparsity"]["layers"]:
            if layer["name"] not in layers:
                layers.append(layer["name"])
                ticks[layer["name"]] = layer.get("label") or layer["name"]
    fig, ax = plt.subplots(figsize=(max(6.5, 1.2 * len(layers) * max(1, len(names)) / 3), 4.5))
    series = []
    width = 0.8 / max(1, len(names))
    for i, v in enumerate(doc["variants"]):
        by = {layer["name"]: layer["sparsity"] for layer in v["sparsity"]["layers"]}
        if not by:
            continue
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(layers))]
        bars = ax.bar(
            xs, [by.get(layer, 0.0) for layer in layers], width=width, color=color[v["name"]], label=v["name"]
        )
        ax.bar_label(bars, labels=[f"{by.get(layer, 0.0):.2f}" for layer in layers], fontsize=6, padding=1)
        series.append({"label": v["name"], "variant": v["name"], "engine": None, "board": None})
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([ticks[layer] for layer in layers], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("sparsity (zero or removed weights / original)")
    ax.set_title("Per-layer sparsity of each variant", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    fig.tight_layout()
    out["sparsity"] = (fig, series)
    return out


def write(doc: dict, out: Path) -> dict[str, str]:
    """Save the PNGs and plots.json; returns {plot name: file name}."""
    plt = _mpl()
    out.mkdir(parents=True, exist_ok=True)
    figs = figures(doc)
    sidecar = {}
    for name, (fig, series) in figs.items():
        fig.savefig(out / FILES[name], dpi=110)
        plt.close(fig)
        sidecar[name] = {"file": FILES[name], "series": series}
    (out / "plots.json").write_text(json.dumps(sidecar, indent=1) + "\n")
    return {name: FILES[name] for name in figs}
