"""Quantization facts in the trace: how a quantizer's per-module ``QuantSpec`` records (as plain dicts) become
per-op bit widths, scale kinds and re-quantization points. Which quantizer to run is a ``QuantConfig``
(:mod:`archsim.workloads.bridge`; a config's ``quant:`` section validates into one).

This module never imports torch: it works on a traced :class:`Workload` and on specs as plain dicts (the form
``quantizer save`` stores them in), so it is testable with hand-written specs. ``archsim.workloads.quantized`` is
the torch side that prepares the model and collects the specs.

What :func:`apply_specs` records (docs/architecture.md, "Quantized traces"):

* every op owned by a quantized module gets ``attrs.quant``: the owning ``module``, ``a_bits``/``w_bits``/
  ``out_bits``, ``scale_kind``, where its output is re-quantized (``requant``: ``after`` = a requant stage behind
  the op, ``folded`` = inside the op, ``none`` = it stays at accumulator width), the integer implementation of a
  non-linear op (``impl``: ``lis`` or ``int2n`` softmax, ``int`` LayerNorm or activation, ``shift`` divide,
  ``leading_one`` log2) and, for a mixed-precision model, ``mixed: true`` with the chosen ``w_bits``;
* MAC ops get ``Op.scale_kind`` from their spec; their weights get ``w_bits`` (so 4-bit weights take half the
  bytes), their outputs ``out_bits``; an activation a MAC op reads is stored at the width that op reads it;
* ops that integer hardware folds into a re-quantization disappear: a scalar multiply of a MAC result (attention's
  1/sqrt(d)) and an element-wise transform by a quantizer's own buffers (Trio-ViT's channel migration and filter
  shift); the op that absorbs them lists them in ``attrs.quant.folded``;
* a log2-quantized divisor (Trio-ViT's linear attention) becomes a ``log2`` op (leading-one detection, 4-bit
  exponent) and a ``divide`` that is a shift.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from archsim.errors import UsageError
from archsim.workloads.ir import MAC_KINDS, Op, Tensor, Workload

if TYPE_CHECKING:
    from archsim.workloads.bridge import QuantConfig

__all__ = ["apply_specs", "owner_of", "with_scale_kind"]

#: Spec kinds of modules whose ops multiply-accumulate.
_MAC_SPEC_KINDS = frozenset({"linear", "conv2d", "matmul", "linear_attention"})


# ---- spec lookup ---------------------------------------------------------------------------------------------------


def _ancestors(scope: str) -> Iterable[str]:
    """``scope`` and every enclosing module path, deepest first, ending with the root ``""``."""
    path = scope
    while True:
        yield path
        if not path:
            return
        path = path.rsplit(".", 1)[0] if "." in path else ""


def owner_of(scope: str, specs: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The deepest quantized module path that ``scope`` lies in (``scope`` itself or an ancestor), or None."""
    return next((path for path in _ancestors(scope) if path in specs), None)


def _mac_owner(scope: str, specs: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The deepest quantized MAC module ``scope`` lies in (skips e.g. the activation quantizers inside it)."""
    return next((p for p in _ancestors(scope) if p in specs and specs[p].get("kind") in _MAC_SPEC_KINDS), None)


def _requant_mode(scale_kind: str) -> str:
    return "shift" if scale_kind in ("pot", "log2") else "multiply"


# ---- the rewrite ---------------------------------------------------------------------------------------------------


@dataclass
class _Draft:
    """A mutable copy of one op while facts are applied."""

    op: Op
    attrs: dict[str, Any]
    scale_kind: str
    kind: str
    dropped: str = ""  # why the op was folded away ("" = kept)


def _fold_reason(op: Op, producers: Mapping[str, Op], consumers: Mapping[str, list[str]],
                 quant_buffers: frozenset[str], specs: Mapping[str, Mapping[str, Any]]) -> str:
    """Why integer hardware folds ``op`` into a re-quantization ('' if it does not)."""
    if op.kind != "eltwise" or len(op.inputs) != 1:
        return ""
    if op.weights and all(w in quant_buffers for w in op.weights):
        return f"{op.fn} by {', '.join(w.rsplit('.', 1)[-1] for w in op.weights)}"
    if op.weights or op.fn not in ("mul", "div") or "scalar" not in op.attrs:
        return ""
    src = producers.get(op.inputs[0])
    if src is None or src.kind not in MAC_KINDS or consumers.get(src.output) != [op.name]:
        return ""
    if _mac_owner(src.scope, specs) is None:
        return ""
    return f"{op.fn} by {op.attrs['scalar']:g}"


def _op_facts(d: _Draft, owner: str, spec: Mapping[str, Any], a_bits: int, mixed: bool,
              bits: dict[str, int]) -> dict[str, Any]:
    """The ``attrs.quant`` facts of one op owned by the quantized module ``owner``; records the tensor widths they
    imply in ``bits`` and may turn the op into another kind (the log2 divisor)."""
    op = d.op
    extra = dict(spec.get("extra") or {})
    facts: dict[str, Any] = {"module": owner}
    if op.kind in MAC_KINDS:
        scale = str(spec.get("scale_kind", "float"))
        out_bits = int(spec.get("out_bits", a_bits))
        facts.update(a_bits=int(spec.get("act_bits", a_bits)), out_bits=min(out_bits, 32), scale_kind=scale)
        if op.weights and spec.get("weight_bits") is not None:
            facts["w_bits"] = int(spec["weight_bits"])
            bits[op.weights[0]] = facts["w_bits"]
            if mixed:
                facts["mixed"] = True
        facts["requant"] = "none" if out_bits >= 32 else "after"
        if facts["requant"] == "after":
            facts["requant_mode"] = _requant_mode(scale)
        d.scale_kind = scale
        bits[op.output] = min(out_bits, 32)
        widths = []
        for i, name in enumerate(op.inputs[:2]):
            width = extra.get("lhs_bits") if i == 0 else None
            widths.append(int(width if width is not None else facts["a_bits"]))
            bits[name] = widths[-1]
        facts["in_bits"] = tuple(widths)
    elif op.kind == "softmax" and extra.get("softmax") == "lis":
        facts.update(impl="lis", out_bits=int(spec["out_bits"]), scale_kind="log2", requant="folded")
        bits[op.output] = int(spec["out_bits"])
    elif op.kind == "softmax" and extra.get("softmax") == "int2n":
        # PackQViT's Int-2^n-Softmax: base-2 exponential on the q·kᵀ accumulator, log2 (or uniform) output codes
        scale = "log2" if extra.get("output", "log2") == "log2" else "pot"
        facts.update(impl="int2n", out_bits=int(spec["out_bits"]), scale_kind=scale, requant="folded")
        bits[op.output] = int(spec["out_bits"])
    elif op.kind == "activation" and spec.get("kind") == "gelu" and extra.get("gelu") == "int":
        # an integer GELU on its producer's accumulator (PackQViT); its reader sets the stored output width
        facts.update(impl="int", requant="folded")
    elif op.kind == "layernorm" and extra.get("layernorm") == "int":
        facts.update(impl="int", out_bits=int(spec["out_bits"]), requant="folded")
        bits[op.output] = int(spec["out_bits"])
    elif spec.get("kind") == "divisor" and op.kind == "divide":
        facts.update(impl="shift", scale_kind="log2", divisor="log2")
        d.scale_kind = "log2"
    elif spec.get("kind") == "divisor" and op.kind == "eltwise" and op.fn == "add" and "scalar" in op.attrs:
        # N / (D + eps) in float becomes e = log2(D) by leading-one detection; D + eps is not computed
        exp_bits = int(extra.get("exp_bits", spec.get("out_bits", 4)))
        facts.update(impl="leading_one", out_bits=exp_bits, scale_kind="log2")
        d.kind = "log2"
        d.attrs = {k: v for k, v in d.attrs.items() if k not in ("fn", "scalar")}
        d.attrs["fn"] = "log2"
        bits[op.output] = exp_bits
    elif op.kind == "activation" and spec.get("kind") in _MAC_SPEC_KINDS and extra.get("act_fn"):
        facts.update(impl="int", out_bits=int(spec.get("out_bits", a_bits)))
    return facts


def apply_specs(w: Workload, specs: Mapping[str, Mapping[str, Any]], quant: QuantConfig, *,
                quant_buffers: Iterable[str] = (), bias_bits: int = 32, meta: Mapping[str, Any] | None = None
                ) -> Workload:
    """``w`` (traced from the quantizer-prepared model in float mode) with the quantizer's facts applied.

    ``specs`` maps module path -> ``QuantSpec.to_dict()``; ``quant_buffers`` names the quantizers' own buffers
    (migration factors, shift centres, scales) so element-wise transforms by them fold away. ``meta`` entries are
    merged into the workload's provenance.
    """
    quant_buffers = frozenset(quant_buffers)
    a_bits = quant.a_bits
    tensors: dict[str, Tensor] = dict(w.tensors)
    producers = {op.output: op for op in w.ops}
    consumers = w.consumers()
    drafts = [_Draft(op, dict(op.attrs), op.scale_kind, op.kind) for op in w.ops]
    by_name = {d.op.name: d for d in drafts}
    mixed = bool(quant.mixed)
    bits: dict[str, int] = {}  # tensor -> width decided by a rule below

    # non-MAC weights (LayerNorm affine, position embeddings, ...) scale or add to activations: activation width
    for d in drafts:
        if d.op.kind not in MAC_KINDS:
            for name in d.op.weights:
                t = tensors[name]
                if t.bits != bias_bits:
                    bits[name] = a_bits

    for d in drafts:
        owner = _mac_owner(d.op.scope, specs) if d.op.kind in MAC_KINDS else owner_of(d.op.scope, specs)
        if owner is not None:
            d.attrs["quant"] = _op_facts(d, owner, specs[owner], a_bits, mixed, bits)

    # fold scalar rescales and quantizer transforms into the re-quantization that feeds them
    alias: dict[str, str] = {}
    for d in drafts:
        reason = _fold_reason(d.op, producers, consumers, quant_buffers, specs)
        if not reason:
            continue
        d.dropped = reason
        src = d.op.inputs[0]
        while src in alias:
            src = alias[src]
        alias[d.op.output] = src
        target = producers.get(src)
        for reader in consumers.get(d.op.output, []):
            facts = by_name[reader].attrs.setdefault("quant", {"module": ""})
            facts.setdefault("folded_inputs", []).append(reason)
        if target is not None and target.kind in MAC_KINDS:
            facts = by_name[target.name].attrs.setdefault("quant", {"module": ""})
            facts.setdefault("folded", []).append(reason)

    def canonical(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    # an op whose kind changed is renamed after it (its output tensor shares the op's name)
    taken = {d.op.name for d in drafts} | set(tensors)
    rename: dict[str, str] = {}
    for d in drafts:
        if d.kind != d.op.kind and not d.dropped and d.op.output == d.op.name:
            base = f"{d.op.scope}.{d.kind}" if d.op.scope else d.kind
            new, k = base, 0
            while new in taken:
                k += 1
                new = f"{base}#{k}"
            taken.add(new)
            rename[d.op.name] = new

    def final(name: str) -> str:
        name = canonical(name)
        return rename.get(name, name)

    for name, width in bits.items():
        name = canonical(name)
        if name in tensors and tensors[name].bits != width:
            tensors[name] = replace(tensors[name], bits=width)
    ops: list[Op] = []
    for d in drafts:
        if d.dropped:
            del tensors[d.op.output]
            continue
        if "quant" in d.attrs:
            d.attrs["quant"] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.attrs["quant"].items()}
        out = final(d.op.output)
        if out != d.op.output:
            tensors[out] = replace(tensors.pop(d.op.output), name=out)
        ops.append(replace(d.op, name=rename.get(d.op.name, d.op.name), kind=d.kind, output=out,
                           inputs=tuple(final(i) for i in d.op.inputs), attrs=d.attrs, scale_kind=d.scale_kind))
    used = {t for op in ops for t in (*op.inputs, *op.weights, op.output)}
    tensors = {k: v for k, v in tensors.items() if k in used}
    full_meta = dict(w.meta)
    full_meta.update(meta or {})
    full_meta["act_bits"], full_meta["weight_bits"] = quant.a_bits, quant.w_bits
    kinds = sorted({op.scale_kind for op in ops if op.kind in MAC_KINDS})
    full_meta["scale_kind"] = kinds[0] if len(kinds) == 1 else "mixed"
    full_meta["folded_ops"] = sum(1 for d in drafts if d.dropped)
    return Workload(name=w.name, tensors=tensors, ops=tuple(ops), meta=full_meta)


def with_scale_kind(w: Workload, scale_kind: str) -> Workload:
    """``w`` with every MAC op re-quantized with ``scale_kind`` scales (a what-if: PoT vs float re-quantization)."""
    if scale_kind not in ("float", "pot", "log2"):
        raise UsageError(f"scale_kind must be float, pot or log2, got {scale_kind!r}")
    ops = []
    for op in w.ops:
        if op.kind not in MAC_KINDS:
            ops.append(op)
            continue
        attrs = dict(op.attrs)
        if isinstance(attrs.get("quant"), Mapping):
            facts = dict(attrs["quant"])
            facts["scale_kind"] = scale_kind
            if "requant_mode" in facts:
                facts["requant_mode"] = _requant_mode(scale_kind)
            attrs["quant"] = facts
        ops.append(replace(op, scale_kind=scale_kind, attrs=attrs))
    meta = dict(w.meta)
    meta["scale_kind"] = scale_kind
    return Workload(name=w.name, tensors=w.tensors, ops=tuple(ops), meta=meta)
