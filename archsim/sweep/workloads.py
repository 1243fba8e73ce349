"""The IR of each workload key, made once on the client: a zoo model is traced (torch is imported here, lazily,
and only when a model must be traced), a saved trace or a YAML workload is read. Workers receive the IR."""
from __future__ import annotations

import json
from typing import Callable

from archsim.errors import UnsupportedModelError, UsageError
from archsim.workloads.ir import Workload


def make_workload(key: str, *, cache: bool = True) -> Workload:
    """The workload a :func:`archsim.sweep.plan.workload_key` names."""
    body = json.loads(key)
    if "trace" in body:
        return Workload.load(body["trace"])
    act_bits, weight_bits, bias_bits, scale_kind = body["bits"]
    if "workload" in body:
        from archsim.workloads.yaml_format import load_yaml_workload

        return load_yaml_workload(body["workload"], act_bits=act_bits, weight_bits=weight_bits, bias_bits=bias_bits)
    from archsim.workloads.bridge import QuantConfig
    from archsim.workloads.zoo import trace_model  # imports torch

    quant = QuantConfig.from_dict(body["quant"]) if body["quant"] is not None else None
    try:
        return trace_model(body["model"], resolution=body["resolution"], batch=body["batch"], act_bits=act_bits,
                           weight_bits=weight_bits, bias_bits=bias_bits, scale_kind=scale_kind,
                           checkpoint=body["checkpoint"], cache=cache, quant=quant)
    except UnsupportedModelError as exc:
        raise UsageError(f"{exc.detail}; sweep a config whose quant: section suits {body['model']}, or set "
                         "quant: null for the float graph") from None


def make_workloads(keys: list[str], *, cache: bool = True,
                   progress: Callable[[str], None] | None = None) -> dict[str, Workload]:
    """Every distinct workload, in the order given (``progress`` is told each one's name as it starts)."""
    out: dict[str, Workload] = {}
    for key in keys:
        if key not in out:
            if progress is not None:
                body = json.loads(key)
                progress(str(body.get("model") or body.get("trace") or body.get("workload")))
            out[key] = make_workload(key, cache=cache)
    return out


__all__ = ["make_workload", "make_workloads"]
