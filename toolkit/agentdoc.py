"""The board agent's JSON, validated before the host uses any of it: a board is a peer that can
print anything. The schema (pydantic models, extra keys allowed for newer agents) covers what
the host reads; a document that does not match is one clear AgentError, never a KeyError."""

from __future__ import annotations

import json
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgeopt.errors import AgentError

MAX_DEPTH = 32  # deeper JSON is refused before it is parsed (json recurses per level)


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ErrorDoc(_Doc):
    kind: str = Field(max_length=200)
    message: str = Field(max_length=20_000)


class BoardDoc(_Doc):
    arch: str
    python: str
    kernel: Optional[str] = None
    cores: Optional[int] = None
    cpu: Optional[str] = None
    memory_mb: Optional[int] = None
    tvm: Optional[str] = None
    numpy: Optional[str] = None


class Envelope(_Doc):
    """Every verb's document."""

    schema_: str = Field(alias="schema")
    agent_version: str
    agent_digest: str
    verb: str
    ok: bool
    error: Optional[ErrorDoc] = None
    board: Optional[BoardDoc] = None
    imports: list[str] = Field(default_factory=list)


class Latency(_Doc):
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    runs: int


class BundleRef(_Doc):
    path: str
    target: Optional[str] = None
    library_sha256: str


class EngineDoc(_Doc):
    """One engine of a plan as the protocol measured it (board/agent/plan.py)."""

    latency_ms: Latency
    load_ms: float
    first_ms: float
    calls_per_round: list[int]
    time_evaluator_median_ms: Optional[float] = None
    repeat_mean_median_ms: Optional[float] = None
    python_overhead_ms: Optional[float] = None
    samples_ms: Optional[list[float]] = None


class OrtDoc(_Doc):
    """onnxruntime's engine: measured (an EngineDoc's fields), or why not."""

    available: bool
    reason: Optional[str] = None
    latency_ms: Optional[Latency] = None
    load_ms: Optional[float] = None
    first_ms: Optional[float] = None
    calls_per_round: Optional[list[int]] = None


class VariantDoc(_Doc):
    name: str
    bundle: BundleRef
    tvm: Optional[EngineDoc] = None
    ort: Optional[OrtDoc] = None
    parity: Optional[dict] = None


class BenchDoc(Envelope):
    """The `bench` verb: one plan's engines, interleaved."""

    board: BoardDoc
    threads: int
    peak_rss_mb: float
    variants: list[VariantDoc]
    protocol: dict


class VersionDoc(Envelope):
    board: BoardDoc


# the verbs whose fields the host reads; the others are checked as an envelope
VERB_SCHEMAS: dict[str, type[Envelope]] = {"bench": BenchDoc, "version": VersionDoc, "info": VersionDoc}


def _depth(text: str) -> int:
    """Maximum nesting of [ and { outside strings (a scan, no recursion)."""
    depth = best = 0
    in_str = esc = False
    for c in text:
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
            best = max(best, depth)
        elif c in "]}":
            depth -= 1
    return best


def parse(text: str, *, verb: str, where: str) -> dict:
    """The agent's document from its stdout, checked against its verb's schema. Raises
    AgentError (exit 7) naming what is wrong; returns the document as a plain dict."""
    text = text.strip()
    if not text:
        raise ValueError("no output")
    if _depth(text) > MAX_DEPTH:
        raise AgentError(
            f"board agent '{verb}' on {where} printed JSON nested deeper than {MAX_DEPTH} levels; refused",
            hint="the board's agent or Python is not the one edgeopt uploaded: deploy again",
        )
    doc = json.loads(text)  # JSONDecodeError (a ValueError) is the caller's "not JSON"
    if not isinstance(doc, dict):
        raise AgentError(
            f"board agent '{verb}' on {where} printed a JSON {type(doc).__name__}, not its document; refused",
            hint="the board's agent or Python is not the one edgeopt uploaded: deploy again",
        )
    schema = VERB_SCHEMAS.get(verb, Envelope) if doc.get("ok") is True else Envelope
    try:
        schema.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise AgentError(
            f"board agent '{verb}' on {where} printed a document that does not match its schema "
            f"({exc.error_count()} problem(s), first at {loc}: {first['msg']}); refused",
            hint="the board's agent or Python is not the one edgeopt uploaded: deploy again",
        ) from None
    return doc
