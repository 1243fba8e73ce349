"""PyTorch front end: trace one forward pass of an ``nn.Module`` into a :class:`~archsim.workloads.ir.Workload`.

How it works
------------
:func:`extract` runs the module once under a ``TorchDispatchMode`` that sees every aten-level call (after PyTorch's
composite ops such as ``linear`` or ``reshape`` have been decomposed), plus forward pre/post hooks on every submodule
that maintain a module-scope stack, so each recorded op knows the dotted module path it came from.

Each aten call is classified:

* **views and aliases** (``view``, ``t``, ``permute``, ``expand``, ``slice``, ``split``, ``_unsafe_view``, ...) and
  dtype casts (``_to_copy``) create no op: their outputs map to the *same* IR tensor as their input. An op that reads
  a view therefore names the base IR tensor in ``inputs``; the shapes it really read are kept in ``attrs.in_shapes``.
* **allocations** (``empty``, ``zeros_like``, ``arange``, ...) create nothing; their results are constants.
* **ops that read no activation** (e.g. Swin's relative-position-bias gather, computed from a parameter table and an
  index buffer) are skipped: a real accelerator precomputes them offline. Their results become *derived weight*
  tensors named ``<root parameter>@<aten op>`` so that the ops that later read them still account for the bytes.
* **everything else** goes through :data:`LOWERINGS`, a registry from aten op name to a lowering function; an op with
  no lowering becomes an op of kind ``other`` (``attrs.aten`` names it), never silently dropped.

``F.scaled_dot_product_attention`` is intercepted one level higher, with a ``TorchFunctionMode``, so it always lowers
to Q·Kᵀ, softmax, A·V whatever kernel PyTorch would pick (on the meta device PyTorch decomposes it into the math
path with two extra scaling multiplies; on CPU it calls a fused flash kernel).

Every op records ``attrs.in_shapes``: the shapes of its activation inputs as the op saw them (a view's shape, not
its base IR tensor's), so a consumer can tell how much of a shared tensor each op really reads (e.g. EfficientViT's
q, k and v are three views of one concatenated tensor). Op names are ``<scope>.<aten op>`` (``#k`` on repeats);
an op's output tensor has the op's name.

Parameters and buffers are weights (``Tensor.is_weight``), named by their path in ``named_parameters()`` /
``named_buffers()``; biases and every tensor of a batch-norm module get ``bias_bits``, other weights ``weight_bits``.
Every other tensor is an activation with ``act_bits``. In-place ops write a new IR tensor version (IR tensors are
written once) and every live alias of the mutated storage moves to that version.

Device choice
-------------
:func:`extract` traces whatever device the module and input are on. The model zoo (``archsim.workloads.zoo``) builds
models on the ``meta`` device: shapes are all a trace needs, so nothing is allocated or computed and even ``vit_large``
at batch 8 traces in a fraction of a second. Every built-in zoo model traces identically on ``meta`` and CPU. Only a
run with a checkpoint uses real CPU tensors, because the weights must actually be loaded and checked.

torch is imported inside functions only, so importing this module stays cheap and torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, NamedTuple, Sequence

from archsim.errors import UsageError
from archsim.workloads.ir import MAC_KINDS, SCALE_KINDS, Op, Tensor, Workload, make_workload
from archsim.workloads.macs import count_macs

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = [
    "AtenCall",
    "LOWERINGS",
    "Ref",
    "TraceContext",
    "extract",
    "register_lowering",
]


# ---------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AtenCall:
    """One recorded aten call: op name (overload packet, e.g. ``convolution``), overload, arguments and result."""

    name: str
    overload: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    out: Any
    mutates: bool = False

    @property
    def source(self) -> str:
        """The op's ``source`` string in the IR (e.g. ``aten.convolution``)."""
        return self.name if "." in self.name else f"aten.{self.name}"

    @property
    def short(self) -> str:
        """The readable part of an op name (``hardswish_`` -> ``hardswish``, ``_softmax`` -> ``softmax``)."""
        return self.name.rsplit(".", 1)[-1].strip("_") or self.name

    @property
    def output(self) -> "torch.Tensor":
        """The call's first tensor result; a lowering that needs one fails loudly (a lowering bug) without it."""
        out = _first_tensor(self.out)
        if out is None:
            raise TypeError(f"{self.source} returned no tensor")
        return out

    def arg(self, index: int, key: str, default: Any = None) -> Any:
        """Argument by position, else by keyword, else ``default``."""
        if index < len(self.args):
            return self.args[index]
        return self.kwargs.get(key, default)


Lowering = Callable[["TraceContext", AtenCall], None]

#: aten op name (overload packet, no namespace for ``aten``; ``ns.name`` for other namespaces) -> lowering function.
LOWERINGS: dict[str, Lowering] = {}


def register_lowering(*aten_names: str) -> Callable[[Lowering], Lowering]:
    """Decorator registering a lowering for one or more aten op names; the extension point for new ops.

    A lowering receives the :class:`TraceContext` and the :class:`AtenCall` (with its result already computed) and
    emits IR ops with :meth:`TraceContext.emit` (or aliases with :meth:`TraceContext.alias`).
    """
    if not aten_names:
        raise UsageError("register_lowering: give at least one aten op name")

    def decorate(fn: Lowering) -> Lowering:
        for aten_name in aten_names:
            LOWERINGS[aten_name] = fn
        return fn

    return decorate


#: Ops whose outputs alias their first tensor argument (no bytes move, no op is recorded). Ops whose schema marks
#: them as views are treated the same way even when missing here.
VIEW_OPS: frozenset[str] = frozenset(
    {
        "view", "_unsafe_view", "_reshape_alias", "reshape", "expand", "expand_as", "t", "transpose", "permute",
        "unsqueeze", "squeeze", "slice", "select", "split", "split_with_sizes", "unbind", "chunk", "narrow", "alias",
        "detach", "as_strided", "unflatten", "flatten", "view_as", "movedim", "swapaxes", "diagonal", "unfold",
        "lift_fresh", "_to_copy", "t_", "transpose_", "unsqueeze_", "squeeze_",
        "as_strided_", "_unsafe_view_",
    }
)

#: Ops that only allocate or produce constants from nothing: they create no op and no activation.
ALLOCATION_OPS: frozenset[str] = frozenset(
    {
        "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like", "new_zeros",
        "ones", "ones_like", "new_ones", "full", "full_like", "new_full", "arange", "linspace", "scalar_tensor",
        "rand", "rand_like", "randn", "randn_like", "randint", "randint_like", "randperm", "lift_fresh_copy",
        "eye", "tensor", "normal", "bernoulli",
    }
)


class Ref(NamedTuple):
    """An operand of an IR op: the IR tensor's name and the shape the op actually sees."""

    name: str
    shape: tuple[int, ...]


@dataclass
class _OpRecord:
    """Mutable draft of an :class:`Op` (a later bias add may still be folded into it)."""

    name: str
    kind: str
    inputs: list[str]
    output: str
    weights: list[str]
    attrs: dict[str, Any]
    macs: int
    scope: str
    scale_kind: str
    source: str

    def freeze(self) -> Op:
        return Op(
            name=self.name, kind=self.kind, inputs=tuple(self.inputs), output=self.output,
            weights=tuple(self.weights), attrs=self.attrs, macs=self.macs, scope=self.scope,
            scale_kind=self.scale_kind, source=self.source,
        )


# ---------------------------------------------------------------------------------------------------------------
# Trace context
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class TraceContext:
    """State of one trace: the live-tensor -> IR-tensor map, the IR tensors and ops emitted so far, the scope stack.

    Lowerings use :meth:`operands`, :meth:`ref`, :meth:`is_activation`, :meth:`emit` and :meth:`alias`.
    """

    act_bits: int
    weight_bits: int
    bias_bits: int
    scale_kind: str
    tensors: dict[str, Tensor] = field(default_factory=dict)
    records: list[_OpRecord] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    suppressed: int = 0
    # id(torch tensor) -> (the tensor itself, kept alive so ids are never reused during the pass; IR tensor name)
    _live: dict[int, tuple[Any, str]] = field(default_factory=dict)
    # storage key -> live tensors sharing that storage (so an in-place write re-points every alias)
    _by_storage: dict[int, list[Any]] = field(default_factory=dict)
    _taken: set[str] = field(default_factory=set)
    _root: dict[str, str] = field(default_factory=dict)  # derived-weight name -> root parameter name

    # ---- naming ----------------------------------------------------------------------------------------------
    @property
    def scope(self) -> str:
        return self.scopes[-1] if self.scopes else ""

    def unique(self, base: str) -> str:
        """``base`` if unused, else ``base#1``, ``base#2``, ... (op and tensor names share one namespace)."""
        candidate, k = base, 0
        while candidate in self._taken:
            k += 1
            candidate = f"{base}#{k}"
        self._taken.add(candidate)
        return candidate

    # ---- binding torch tensors to IR tensors -----------------------------------------------------------------
    def _bind(self, t: "torch.Tensor", name: str, *, inplace: bool = False) -> None:
        key = _storage_key(t)
        if inplace and key is not None:
            for other in self._by_storage.get(key, ()):
                if id(other) in self._live:
                    self._live[id(other)] = (other, name)
        self._live[id(t)] = (t, name)
        if key is not None:
            mates = self._by_storage.setdefault(key, [])
            if not any(m is t for m in mates):
                mates.append(t)

    def name_of(self, t: Any) -> str | None:
        """IR tensor name of a live torch tensor (activation or weight), or None for constants and non-tensors."""
        entry = self._live.get(id(t))
        if entry is None or entry[0] is not t:
            return None
        return entry[1]

    def is_activation(self, t: Any) -> bool:
        name = self.name_of(t)
        return name is not None and not self.tensors[name].is_weight

    def is_weight(self, t: Any) -> bool:
        name = self.name_of(t)
        return name is not None and self.tensors[name].is_weight

    def register_weight(self, t: "torch.Tensor", name: str, bits: int) -> None:
        """Declare a parameter/buffer (done for every one before the pass; unused ones are pruned at the end)."""
        self.tensors[name] = Tensor(name=name, shape=tuple(int(s) for s in t.shape), bits=bits, is_weight=True)
        self._taken.add(name)
        self._bind(t, name)

    def register_input(self, t: "torch.Tensor", base: str) -> None:
        name = self.unique(base)
        self.tensors[name] = Tensor(name=name, shape=_shape(t), bits=self.act_bits)
        self._bind(t, name)

    def ref(self, t: "torch.Tensor") -> Ref:
        """Operand reference of a tensor that is an activation or a weight (registers non-scalar constants)."""
        name = self.name_of(t)
        if name is None:
            name = self._register_constant(t)
        return Ref(name, _shape(t))

    def _register_constant(self, t: "torch.Tensor") -> str:
        """A tensor made inside forward from no parameter (a mask built with arange, ...): a weight-like constant."""
        name = self.unique(f"{self.scope}.const" if self.scope else "const")
        self.tensors[name] = Tensor(name=name, shape=_shape(t), bits=self.weight_bits, is_weight=True)
        self._bind(t, name)
        return name

    def operands(self, *objs: Any) -> tuple[list[Ref], list[Ref]]:
        """Split arguments (tensors, lists of tensors, scalars) into activation refs and weight refs, in order.

        Scalars, ``None`` and one-element constants (wrapped Python numbers) are not operands and are skipped.
        """
        acts: list[Ref] = []
        weights: list[Ref] = []
        for t in _tensor_leaves(objs):
            if self.is_activation(t):
                acts.append(self.ref(t))
            elif self.is_weight(t) or t.numel() > 1:
                weights.append(self.ref(t))
        return acts, weights

    # ---- emitting ops -----------------------------------------------------------------------------------------
    def emit(
        self,
        call: AtenCall,
        kind: str,
        inputs: Sequence[Ref],
        out: "torch.Tensor | Sequence[int]",
        *,
        weights: Sequence[Ref] = (),
        attrs: Mapping[str, Any] | None = None,
        macs: int = 0,
        short: str | None = None,
    ) -> Ref:
        """Append one IR op writing a new activation tensor; bind ``out`` (a torch tensor or a bare shape) to it."""
        import torch

        base = short or call.short
        name = self.unique(f"{self.scope}.{base}" if self.scope else base)
        shape = _shape(out) if isinstance(out, torch.Tensor) else tuple(int(s) for s in out)
        self.tensors[name] = Tensor(name=name, shape=shape, bits=self.act_bits)
        full_attrs = dict(attrs or {})
        full_attrs["in_shapes"] = tuple(r.shape for r in inputs)
        record = _OpRecord(
            name=name,
            kind=kind,
            inputs=[r.name for r in inputs],
            output=name,
            weights=list(dict.fromkeys(r.name for r in weights)),
            attrs=full_attrs,
            macs=int(macs),
            scope=self.scope,
            scale_kind=self.scale_kind if kind in MAC_KINDS else "none",
            source=call.source,
        )
        self.records.append(record)
        if isinstance(out, torch.Tensor):
            self._bind(out, name, inplace=call.mutates)
        return Ref(name, shape)

    def alias(self, out: Any, src: Any) -> None:
        """Map every tensor in ``out`` to the IR tensor of ``src`` (no-op when ``src`` is a constant)."""
        name = self.name_of(src)
        if name is None:
            return
        for t in _tensor_leaves(out):
            self._bind(t, name)

    def last_record(self) -> _OpRecord | None:
        return self.records[-1] if self.records else None

    def fold_constant(self, call: AtenCall, tensors: Sequence["torch.Tensor"]) -> None:
        """An op reading weights/constants only: record no op, expose the results as derived weight tensors."""
        roots = [self.name_of(t) for t in tensors if self.is_weight(t)]
        if not roots:
            return  # pure constants (wrapped numbers, masks from arange, ...) stay untracked
        first = str(roots[0])
        root = self._root.get(first, first)
        bits = self.tensors[first].bits
        for t in _tensor_leaves(call.out):
            if t.numel() == 0 or (self.name_of(t) is not None and not call.mutates):
                continue
            name = self.unique(f"{root}@{call.short}")
            self.tensors[name] = Tensor(name=name, shape=_shape(t), bits=bits, is_weight=True)
            self._root[name] = root
            self._bind(t, name, inplace=call.mutates)

    # ---- result -----------------------------------------------------------------------------------------------
    def workload(self, name: str, meta: Mapping[str, Any]) -> Workload:
        """Freeze the ops; keep only the tensors some op references, in registration order."""
        ops = [r.freeze() for r in self.records]
        used: set[str] = set()
        for op in ops:
            used.update(op.inputs)
            used.update(op.weights)
            used.add(op.output)
        tensors = [t for n, t in self.tensors.items() if n in used]
        return make_workload(name, tensors, ops, meta)


# ---------------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------------
def _shape(t: "torch.Tensor") -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def _storage_key(t: "torch.Tensor") -> int | None:
    """Identity of the storage behind ``t`` (views share it); None for tensors without one."""
    try:
        return int(t.untyped_storage()._cdata)
    except (RuntimeError, NotImplementedError, AttributeError):
        return None


def _tensor_leaves(obj: Any) -> Iterator["torch.Tensor"]:
    import torch
    from torch.utils._pytree import tree_leaves

    for leaf in tree_leaves(obj):
        if isinstance(leaf, torch.Tensor):
            yield leaf


def _ints(value: Any, n: int = 2) -> tuple[int, ...]:
    """An int or int sequence as an n-tuple (PyTorch lets 2-d pooling/conv arguments be a single int)."""
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return tuple(int(value[0]) for _ in range(n))
        return tuple(int(v) for v in value)
    return tuple(int(value) for _ in range(n))


def _scalar(value: Any) -> float | int | bool | None:
    """A Python scalar argument (for ``attrs.scalar``), else None."""
    if isinstance(value, (bool, int, float)):
        return value
    return None


def _first_tensor(obj: Any) -> "torch.Tensor | None":
    return next(_tensor_leaves(obj), None)


# ---------------------------------------------------------------------------------------------------------------
# Lowerings
# ---------------------------------------------------------------------------------------------------------------
@register_lowering("convolution", "_convolution", "conv2d")
def _lower_convolution(ctx: TraceContext, call: AtenCall) -> None:
    """2-d, non-transposed convolution -> ``conv2d`` (other ranks and transposed convs -> ``other``)."""
    x, w = call.args[0], call.args[1]
    transposed = bool(call.arg(6, "transposed", False)) if call.name != "conv2d" else False
    if w.dim() != 4 or transposed:
        _lower_other(ctx, call)
        return
    bias = call.arg(2, "bias")
    stride = _ints(call.arg(3, "stride", 1))
    padding = _ints(call.arg(4, "padding", 0))
    dilation = _ints(call.arg(5, "dilation", 1))
    groups = int(call.arg(8, "groups", 1) if call.name != "conv2d" else call.arg(6, "groups", 1))
    acts, weights = ctx.operands(x, w, bias)
    attrs = {"kernel": tuple(int(s) for s in w.shape[2:]), "stride": stride, "padding": padding,
             "dilation": dilation, "groups": groups}
    macs = count_macs("conv2d", [_shape(x)], _shape(w), _shape(call.out))
    ctx.emit(call, "conv2d", acts, call.out, weights=weights, attrs=attrs, macs=macs)


def _lower_product(ctx: TraceContext, call: AtenCall, a: Any, b: Any, extra: Sequence[Any] = ()) -> None:
    """``a @ b`` (+ ``extra`` such as an addmm bias): ``matmul`` between activations, else ``linear``."""
    out = call.output
    k = int(a.shape[-1])
    if ctx.is_activation(a) and ctx.is_activation(b):
        acts, weights = ctx.operands(a, b, *extra)
        macs = count_macs("matmul", [_shape(a), _shape(b)], None, _shape(out))
        ctx.emit(call, "matmul", acts, out, weights=weights, macs=macs)
        return
    # one operand is a parameter: weight first, then the bias (if any)
    acts, weights = ctx.operands(a, b, *extra)
    n = int(out.shape[-1]) if out.dim() else 1
    macs = count_macs("linear", [_shape(a)], (n, k), _shape(out))
    ctx.emit(call, "linear", acts, out, weights=weights, macs=macs)


@register_lowering("mm", "bmm", "matmul")
def _lower_mm(ctx: TraceContext, call: AtenCall) -> None:
    _lower_product(ctx, call, call.args[0], call.args[1])


@register_lowering("addmm", "baddbmm")
def _lower_addmm(ctx: TraceContext, call: AtenCall) -> None:
    _lower_product(ctx, call, call.args[1], call.args[2], extra=(call.args[0],))


@register_lowering("linear")
def _lower_linear(ctx: TraceContext, call: AtenCall) -> None:
    x, w, bias = call.args[0], call.args[1], call.arg(2, "bias")
    out = call.output
    acts, weights = ctx.operands(x, w, bias)
    macs = count_macs("linear", [_shape(x)], _shape(w), _shape(out))
    ctx.emit(call, "linear", acts, out, weights=weights, macs=macs)


@register_lowering(
    "scaled_dot_product_attention",
    "_scaled_dot_product_attention_math",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
)
def _lower_sdpa(ctx: TraceContext, call: AtenCall) -> None:
    """Attention -> matmul (Q·Kᵀ), [eltwise add of the mask], softmax, matmul (A·V); the scale is folded in."""
    q, k, v = call.args[0], call.args[1], call.args[2]
    out = call.output
    mask = call.kwargs.get("attn_mask", call.kwargs.get("attn_bias"))
    if mask is None and len(call.args) > 3 and hasattr(call.args[3], "shape"):
        mask = call.args[3]
    lead = tuple(int(s) for s in q.shape[:-2])
    seq_q, seq_k = int(q.shape[-2]), int(k.shape[-2])
    score_shape = (*lead, seq_q, seq_k)
    q_ref, k_ref, v_ref = ctx.ref(q), ctx.ref(k), ctx.ref(v)
    k_t = Ref(k_ref.name, (*k_ref.shape[:-2], k_ref.shape[-1], k_ref.shape[-2]))
    qk_macs = count_macs("matmul", [_shape(q), k_t.shape], None, score_shape)
    scores = ctx.emit(call, "matmul", [q_ref, k_t], score_shape, macs=qk_macs, short="sdpa_qk",
                      attrs={"transpose_b": True})
    if mask is not None:
        m_acts, m_weights = ctx.operands(mask)
        fn = "mask" if str(mask.dtype) == "torch.bool" else "add"
        scores = ctx.emit(call, "eltwise", [scores, *m_acts], score_shape, weights=m_weights,
                          attrs={"fn": fn}, short="sdpa_mask")
    probs = ctx.emit(call, "softmax", [scores], score_shape, attrs={"dim": -1}, short="sdpa_softmax")
    av_macs = count_macs("matmul", [score_shape, _shape(v)], None, _shape(out))
    ctx.emit(call, "matmul", [probs, v_ref], out, macs=av_macs, short="sdpa_av")


@register_lowering(
    "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training", "batch_norm",
    "_batch_norm_with_update", "_batch_norm_no_update", "cudnn_batch_norm", "miopen_batch_norm",
)
def _lower_batch_norm(ctx: TraceContext, call: AtenCall) -> None:
    """Batch norm; weights in the order weight, bias, running mean, running var."""
    acts, weights = ctx.operands(call.args[0], *call.args[1:5])
    ctx.emit(call, "batchnorm", acts, call.output, weights=weights)


@register_lowering("native_layer_norm", "layer_norm")
def _lower_layer_norm(ctx: TraceContext, call: AtenCall) -> None:
    x = call.args[0]
    normalized = tuple(int(s) for s in call.arg(1, "normalized_shape", ()))
    acts, weights = ctx.operands(x, call.arg(2, "weight"), call.arg(3, "bias"))
    ctx.emit(call, "layernorm", acts, call.output, weights=weights,
             attrs={"normalized_shape": normalized})


@register_lowering("_softmax", "softmax", "_safe_softmax", "_log_softmax", "log_softmax")
def _lower_softmax(ctx: TraceContext, call: AtenCall) -> None:
    acts, weights = ctx.operands(call.args[0])
    attrs: dict[str, Any] = {"dim": int(call.arg(1, "dim", -1))}
    if "log" in call.name:
        attrs["fn"] = "log_softmax"
    ctx.emit(call, "softmax", acts, call.output, weights=weights, attrs=attrs)


_ACTIVATIONS = (
    "relu", "gelu", "hardswish", "silu", "sigmoid", "tanh", "hardsigmoid", "hardtanh", "leaky_relu", "elu",
    "mish", "softplus", "clamp", "clamp_min", "clamp_max", "threshold",
)


@register_lowering(*_ACTIVATIONS, *(f"{n}_" for n in _ACTIVATIONS))
def _lower_activation(ctx: TraceContext, call: AtenCall) -> None:
    """Pointwise nonlinearity -> ``activation`` with ``attrs.fn`` (``hardtanh(0, 6)`` is reported as relu6)."""
    fn = call.name.rstrip("_")
    attrs: dict[str, Any] = {"fn": fn}
    if fn == "hardtanh" and (call.arg(1, "min_val", -1.0), call.arg(2, "max_val", 1.0)) == (0.0, 6.0):
        attrs["fn"] = "relu6"
    if fn == "gelu" and call.kwargs.get("approximate", "none") != "none":
        attrs["approximate"] = call.kwargs["approximate"]
    acts, weights = ctx.operands(call.args[0])
    ctx.emit(call, "activation", acts, call.output, weights=weights, attrs=attrs)


_ELTWISE_BINARY = ("add", "sub", "mul", "rsub", "maximum", "minimum", "pow")
_ELTWISE_UNARY = ("neg", "exp", "log", "log2", "sqrt", "rsqrt", "reciprocal", "abs", "erf", "square")


@register_lowering(*_ELTWISE_BINARY, *(f"{n}_" for n in _ELTWISE_BINARY),
                   *_ELTWISE_UNARY, *(f"{n}_" for n in _ELTWISE_UNARY))
def _lower_eltwise(ctx: TraceContext, call: AtenCall) -> None:
    """Elementwise arithmetic (tensor-tensor or tensor-scalar) -> ``eltwise`` with ``attrs.fn``."""
    fn = call.name.rstrip("_")
    operands = [call.args[0], call.arg(1, "other")] if fn in _ELTWISE_BINARY else [call.args[0]]
    acts, weights = ctx.operands(*operands)
    if fn == "add" and _fold_bias(ctx, call, acts, weights):
        return
    attrs: dict[str, Any] = {"fn": fn}
    scalar = _scalar(operands[-1]) if len(operands) > 1 else None
    if scalar is not None:
        attrs["scalar"] = scalar
    alpha = call.kwargs.get("alpha", call.args[2] if len(call.args) > 2 else 1)
    if fn in ("add", "sub", "rsub") and alpha != 1:
        attrs["alpha"] = alpha
    ctx.emit(call, "eltwise", acts, call.output, weights=weights, attrs=attrs)


def _fold_bias(ctx: TraceContext, call: AtenCall, acts: list[Ref], weights: list[Ref]) -> bool:
    """Fold ``y = mm(x, Wᵀ); y + b`` (PyTorch's linear on non-contiguous N-d inputs) into the linear op."""
    last = ctx.last_record()
    if last is None or len(acts) != 1 or len(weights) != 1 or last.kind != "linear" or len(last.weights) != 1:
        return False
    bias = ctx.tensors[weights[0].name]
    out = call.output
    if acts[0].name != last.output or len(bias.shape) != 1 or not out.dim() or bias.shape[0] != out.shape[-1]:
        return False
    last.weights.append(bias.name)
    ctx._bind(out, last.output)
    return True


@register_lowering("div", "div_")
def _lower_div(ctx: TraceContext, call: AtenCall) -> None:
    """Division of two activations -> ``divide`` (linear attention's divisor); by a scalar/constant -> eltwise."""
    a, b = call.args[0], call.arg(1, "other")
    acts, weights = ctx.operands(a, b)
    attrs: dict[str, Any] = {"fn": "div"}
    if call.kwargs.get("rounding_mode"):
        attrs["rounding_mode"] = call.kwargs["rounding_mode"]
    if ctx.is_activation(a) and ctx.is_activation(b):
        ctx.emit(call, "divide", acts, call.output, attrs=attrs)
        return
    scalar = _scalar(b)
    if scalar is not None:
        attrs["scalar"] = scalar
    ctx.emit(call, "eltwise", acts, call.output, weights=weights, attrs=attrs)


_REDUCE_FN = {"mean": "mean", "sum": "sum", "amax": "max", "amin": "min", "max": "max", "min": "min",
              "prod": "prod", "var": "var", "std": "std"}


@register_lowering(*_REDUCE_FN)
def _lower_reduce(ctx: TraceContext, call: AtenCall) -> None:
    """Reductions -> ``reduce`` (attrs fn, dims, keepdim); binary ``max``/``min`` overloads are eltwise."""
    if call.name in ("max", "min") and call.overload in ("other", "out", "binary_out"):
        _lower_eltwise(ctx, AtenCall("maximum" if call.name == "max" else "minimum", call.overload, call.args,
                                     call.kwargs, call.out, call.mutates))
        return
    x = call.args[0]
    dims = call.arg(1, "dim")
    if isinstance(dims, int):
        dims = (dims,)
    attrs: dict[str, Any] = {
        "fn": _REDUCE_FN[call.name],
        "dims": tuple(int(d) for d in dims) if dims else tuple(range(x.dim())),
        "keepdim": bool(call.kwargs.get("keepdim", len(call.args) > 2 and call.args[2] is True)),
    }
    acts, weights = ctx.operands(x)
    ctx.emit(call, "reduce", acts, call.output, weights=weights, attrs=attrs)


@register_lowering("avg_pool2d", "max_pool2d", "max_pool2d_with_indices")
def _lower_pool(ctx: TraceContext, call: AtenCall) -> None:
    kernel = _ints(call.arg(1, "kernel_size"))
    stride_arg = call.arg(2, "stride")
    attrs = {
        "fn": "max" if "max" in call.name else "avg",
        "kernel": kernel,
        "stride": _ints(stride_arg) if stride_arg else kernel,
        "padding": _ints(call.arg(3, "padding", 0)),
    }
    acts, weights = ctx.operands(call.args[0])
    ctx.emit(call, "pool", acts, call.output, weights=weights, attrs=attrs)


@register_lowering("_adaptive_avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d")
def _lower_adaptive_pool(ctx: TraceContext, call: AtenCall) -> None:
    x, out = call.args[0], call.output
    size = _ints(call.arg(1, "output_size"))
    attrs: dict[str, Any] = {"fn": "max" if "max" in call.name else "avg", "output_size": size}
    in_hw = tuple(int(s) for s in x.shape[-2:])
    if all(s and i % s == 0 for i, s in zip(in_hw, size)):
        attrs["kernel"] = attrs["stride"] = tuple(i // s for i, s in zip(in_hw, size))
    acts, weights = ctx.operands(x)
    ctx.emit(call, "pool", acts, out, weights=weights, attrs=attrs)


@register_lowering(
    "clone", "copy_", "copy", "cat", "concat", "constant_pad_nd", "roll", "index", "index_select", "gather",
    "repeat", "_unsafe_index", "slice_scatter", "select_scatter", "index_put", "index_put_", "scatter", "flip",
    "pixel_shuffle", "pixel_unshuffle", "stack",
)
def _lower_data_movement(ctx: TraceContext, call: AtenCall) -> None:
    """Copies that move bytes -> ``data_movement`` (attrs.fn = the aten op); an all-zero pad is a free alias."""
    if call.name == "constant_pad_nd" and not any(int(p) for p in call.arg(1, "pad", ())):
        ctx.alias(call.out, call.args[0])
        return
    if call.name == "copy_":
        dst, src = call.args[0], call.args[1]
        acts, weights = ctx.operands(src, dst) if ctx.is_activation(dst) else ctx.operands(src)
    else:
        acts, weights = ctx.operands(*call.args, *call.kwargs.values())
    attrs: dict[str, Any] = {"fn": call.short}
    if call.name in ("cat", "concat", "stack"):
        attrs["dims"] = (int(call.arg(1, "dim", 0)),)
    elif call.name in ("roll", "flip"):
        attrs["dims"] = _ints(call.arg(2 if call.name == "roll" else 1, "dims", ()), 1)
    ctx.emit(call, "data_movement", acts, call.output, weights=weights, attrs=attrs)


def _lower_other(ctx: TraceContext, call: AtenCall) -> None:
    """Fallback for an aten op with no lowering: kept as kind ``other`` with ``attrs.aten``, never dropped."""
    acts, weights = ctx.operands(*call.args, *call.kwargs.values())
    out = _first_tensor(call.out)
    ctx.emit(call, "other", acts, out if out is not None else (), weights=weights,
             attrs={"aten": call.source})


# ---------------------------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------------------------
def _op_name(func: Any) -> str:
    packet = func.overloadpacket.__name__
    return packet if func.namespace == "aten" else f"{func.namespace}.{packet}"


def _is_view(func: Any, name: str) -> bool:
    return name in VIEW_OPS or bool(getattr(func, "is_view", False))


class _LoweringBug(Exception):
    """Wraps an exception raised by a lowering, so :func:`extract` does not mistake it for a model error."""


def _record_call(ctx: TraceContext, func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> None:
    """Classify one aten call (view, allocation, constant, lowered op) and update ``ctx``."""
    name = _op_name(func)
    if name in ALLOCATION_OPS:
        return
    tensors = list(_tensor_leaves((args, dict(kwargs))))
    if _is_view(func, name):
        if tensors:
            ctx.alias(out, tensors[0])
        return
    if not any(ctx.is_activation(t) for t in tensors):
        ctx.fold_constant(AtenCall(name, func._overloadname, args, kwargs, out, _mutates(func)), tensors)
        return
    outputs = list(_tensor_leaves(out))
    if outputs and all(t.numel() == 0 for t in outputs):
        return  # an empty result does no work (and IR shapes must be positive)
    call = AtenCall(name, func._overloadname, tuple(args), dict(kwargs), out, _mutates(func))
    LOWERINGS.get(name, _lower_other)(ctx, call)
    _alias_secondary_outputs(ctx, out)


def _mutates(func: Any) -> bool:
    return bool(func._schema.is_mutable)


def _alias_secondary_outputs(ctx: TraceContext, out: Any) -> None:
    """Extra outputs of a lowered op (batch-norm statistics, pool indices, ...) alias its primary output."""
    leaves = list(_tensor_leaves(out))
    primary = next((t for t in leaves if ctx.name_of(t) is not None), None)
    if primary is None:
        return
    for t in leaves:
        if ctx.name_of(t) is None:
            ctx.alias(t, primary)


def _fused_layout(out: Any) -> Any:
    """Give an attention output the memory layout of PyTorch's fused kernels: (B, H, L, E) viewed over (B, L, H, E).

    Fused CPU/GPU kernels return that layout, so the usual ``transpose(1, 2).reshape(B, L, H * E)`` that follows is
    free; the math path used on the meta device returns a contiguous (B, H, L, E) and the reshape would then show up
    as a spurious ``clone``. Normalising the layout makes meta and real traces identical.
    """
    import torch

    if isinstance(out, torch.Tensor) and out.dim() == 4:
        return out.transpose(1, 2).contiguous().transpose(1, 2)
    return out


def _make_modes(ctx: TraceContext) -> tuple[Any, Any]:
    """The function mode (intercepts SDPA) and the dispatch mode (records aten calls) for one trace."""
    import torch
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    sdpa = torch._C._nn.scaled_dot_product_attention

    class _AttentionMode(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                               kwargs: Mapping[str, Any] | None = None) -> Any:
            kwargs = dict(kwargs or {})
            if func is not sdpa or ctx.suppressed:
                return func(*args, **kwargs)
            ctx.suppressed += 1
            try:
                out = _fused_layout(func(*args, **kwargs))
            finally:
                ctx.suppressed -= 1
            names = ("query", "key", "value", "attn_mask")
            operands = tuple(args[i] if i < len(args) else kwargs.get(n) for i, n in enumerate(names))
            if any(ctx.is_activation(t) for t in _tensor_leaves(operands)):
                call = AtenCall("scaled_dot_product_attention", "default", operands, {}, out)
                try:
                    _lower_sdpa(ctx, call)
                except Exception as exc:  # noqa: BLE001 - re-raised unchanged by extract()
                    raise _LoweringBug() from exc
            return out

    class _RecordMode(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                               kwargs: Mapping[str, Any] | None = None) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            if not ctx.suppressed:
                try:
                    _record_call(ctx, func, args, kwargs, out)
                except Exception as exc:  # noqa: BLE001 - re-raised unchanged by extract()
                    raise _LoweringBug() from exc
            return out

    return _AttentionMode(), _RecordMode()


# ---------------------------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------------------------
def check_bits(value: Any, arg: str) -> int:
    """``value`` if it is an integer bit width in 1..32, else a UsageError naming ``arg``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 32:
        raise UsageError(f"{arg} must be an integer in 1..32, got {value!r}")
    return value


def check_scale_kind(value: Any) -> str:
    """``value`` if it is a known scale kind, else a UsageError naming the argument."""
    if not isinstance(value, str) or value not in SCALE_KINDS:
        raise UsageError(f"scale_kind must be one of {', '.join(sorted(SCALE_KINDS))}, got {value!r}")
    return str(value)


def _weight_bits_for(path: str, owner: Any, weight_bits: int, bias_bits: int) -> int:
    """Biases and every tensor of a batch-norm module (statistics and affine) use ``bias_bits``."""
    import torch

    leaf = path.rsplit(".", 1)[-1]
    if leaf == "bias" or isinstance(owner, torch.nn.modules.batchnorm._BatchNorm):
        return bias_bits
    return weight_bits


def _declare_weights(ctx: TraceContext, module: Any, weight_bits: int, bias_bits: int) -> None:
    owners = dict(module.named_modules())
    for kind in ("parameters", "buffers"):
        for path, t in getattr(module, f"named_{kind}")():
            if t is None:
                continue
            owner = owners.get(path.rsplit(".", 1)[0] if "." in path else "")
            ctx.register_weight(t, path, _weight_bits_for(path, owner, weight_bits, bias_bits))


def _scope_hooks(ctx: TraceContext, module: Any) -> list[Any]:
    """Forward pre/post hooks on every submodule that push/pop its dotted path onto ``ctx.scopes``."""
    handles = []
    for path, sub in module.named_modules():
        def push(_m: Any, _inputs: Any, path: str = path) -> None:
            ctx.scopes.append(path)

        def pop(_m: Any, _inputs: Any, _output: Any) -> None:
            if ctx.scopes:
                ctx.scopes.pop()

        handles.append(sub.register_forward_pre_hook(push))
        handles.append(sub.register_forward_hook(pop, always_call=True))
    return handles


def _default_meta(name: str, inputs: Sequence[Any], act_bits: int, weight_bits: int, bias_bits: int,
                  scale_kind: str) -> dict[str, Any]:
    from archsim.workloads.cache import package_versions

    first = inputs[0]
    resolution: Any = None
    if first.dim() == 4:
        h, w = int(first.shape[-2]), int(first.shape[-1])
        resolution = h if h == w else [h, w]
    versions = package_versions()
    return {
        "model": name,
        "resolution": resolution,
        "batch": int(first.shape[0]) if first.dim() else 1,
        "act_bits": act_bits,
        "weight_bits": weight_bits,
        "bias_bits": bias_bits,
        "scale_kind": scale_kind,
        "weights": "unspecified",
        "torch": versions["torch"],
        "timm": versions["timm"],
        "archsim": versions["archsim"],
    }


def extract(
    module: Any,
    example_input: Any,
    *,
    name: str,
    act_bits: int = 8,
    weight_bits: int = 8,
    bias_bits: int = 32,
    scale_kind: str = "none",
    meta: Mapping[str, Any] | None = None,
) -> Workload:
    """Trace one forward pass of ``module`` on ``example_input`` (a tensor or a tuple of tensors) into a Workload.

    The module should already be in eval mode; it runs under ``torch.no_grad()``. ``meta`` entries override the
    defaults (model, resolution, batch, bit widths, scale_kind, weights, torch/timm/archsim versions).
    """
    import torch

    act_bits = check_bits(act_bits, "act_bits")
    weight_bits = check_bits(weight_bits, "weight_bits")
    bias_bits = check_bits(bias_bits, "bias_bits")
    scale_kind = check_scale_kind(scale_kind)
    if not isinstance(module, torch.nn.Module):
        raise UsageError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    inputs = (example_input,) if isinstance(example_input, torch.Tensor) else tuple(example_input or ())
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise UsageError("example_input must be a tensor or a non-empty tuple of tensors")

    ctx = TraceContext(act_bits=act_bits, weight_bits=weight_bits, bias_bits=bias_bits, scale_kind=scale_kind)
    _declare_weights(ctx, module, weight_bits, bias_bits)
    for i, t in enumerate(inputs):
        ctx.register_input(t, "input" if len(inputs) == 1 else f"input{i}")

    handles = _scope_hooks(ctx, module)
    attention_mode, record_mode = _make_modes(ctx)
    try:
        with torch.no_grad(), attention_mode, record_mode:
            module(*inputs)
    except _LoweringBug as bug:
        raise bug.__cause__ or bug from None  # a bug in a lowering: keep its own traceback
    except (RuntimeError, ValueError, TypeError, AssertionError, IndexError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"{name}: forward pass failed on the example input: {first_line}") from None
    finally:
        for handle in handles:
            handle.remove()

    full_meta = _default_meta(name, inputs, act_bits, weight_bits, bias_bits, scale_kind)
    full_meta.update(dict(meta or {}))
    return ctx.workload(name, full_meta)
