"""The on-device benchmark runner: several bundles (variants) on one or more boards, interleaved,
each against onnxruntime on the same board; one combined report (JSON, markdown, PNG plots), a
history of runs and a comparison of two runs.

    toolkit.bench.variants  -- BUNDLE arguments -> named variants (a bundle, or a dir of bundles)
    toolkit.bench.runner    -- one board: deploy every bundle, one plan of the agent's `bench` verb
    toolkit.bench.fleet     -- N boards in parallel threads; a failing board is recorded, not fatal
    toolkit.bench.report    -- the combined report (report.json, report.md)
    toolkit.bench.plots     -- latency distribution, accuracy vs latency, per-layer sparsity (Agg)
    toolkit.bench.history   -- a JSON-lines history of runs
    toolkit.bench.compare   -- what changed between two runs
"""
