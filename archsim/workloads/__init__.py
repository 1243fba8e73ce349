"""Workloads: the op-trace IR and its open vocabulary of op kinds, its front ends (hand-written YAML, PyTorch
tracing) and the model zoo."""
from archsim.workloads.ir import MAC_KINDS, SCHEMA_VERSION, Op, Tensor, Workload, make_workload
from archsim.workloads.kinds import OP_KINDS, OpKind, register_op_kind

__all__ = ["MAC_KINDS", "OP_KINDS", "SCHEMA_VERSION", "Op", "OpKind", "Tensor", "Workload", "make_workload",
           "register_op_kind"]
