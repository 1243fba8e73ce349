"""Workloads: the op-trace IR, its front ends (hand-written YAML, PyTorch tracing) and the model zoo."""
from archsim.workloads.ir import MAC_KINDS, OP_KINDS, SCHEMA_VERSION, Op, Tensor, Workload, make_workload

__all__ = ["MAC_KINDS", "OP_KINDS", "SCHEMA_VERSION", "Op", "Tensor", "Workload", "make_workload"]
