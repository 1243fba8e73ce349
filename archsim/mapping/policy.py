"""Mapping policies (``mapping.policy``): a published accelerator's own mapping rules, on top of ``assign``.

A :class:`Policy` is a registered object with one interface; the mapper calls its hooks at fixed points and never
tests a policy's name. The built-ins (``generic``, ``trio``, ``p2vit``, in :mod:`archsim.mapping.policies`)
register through :func:`register_policy`, the call a plugin uses; a config may name any registered policy.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Mapping, Sequence, TypeVar, cast

from archsim import registry
from archsim.registry import Registry
from archsim.workloads.geometry import Depthwise, Gemm, geometry
from archsim.workloads.ir import Op, Tensor

if TYPE_CHECKING:
    from archsim.config.load import ArchConfig
    from archsim.mapping.assign import Neighbours
    from archsim.mapping.taskgraph import Task


class Policy:
    """The hooks a mapping policy may override; the defaults are the generic mapping (assign and fuse as written).

    ``streams_any_operand``: a fused consumer may take the streamed tensor as any operand, not only its first
    (Q·S reads S as its second)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    streams_any_operand: ClassVar[bool] = False

    def split(self, cls: str, op: Op, tensors: Mapping[str, Tensor], ctx: Neighbours, geom: Gemm | Depthwise,
              engines: Sequence[str]) -> list[Gemm | Depthwise] | None:
        """The policy's own split of an op assigned to several engines (one share each), or None for the default:
        output channels in proportion to the engines' peak MACs."""
        return None

    def starts_group(self, op: Op, tensors: Mapping[str, Tensor]) -> bool:
        """True if ``op`` must open a new fusion group."""
        return False

    def group_tiles(self, ops: Sequence[Op], tensors: Mapping[str, Tensor], min_tiles: int) -> int:
        """The fewest tiles a fusion group of ``ops`` is cut into: its streaming grain."""
        return 1 if len(ops) < 2 else min_tiles

    def fixed_grain(self, ops: Sequence[Op], tensors: Mapping[str, Tensor]) -> bool:
        """True when :meth:`group_tiles` of ``ops`` is the dataflow's own grain (one depthwise row, one head),
        which the mapper keeps instead of searching finer tiles."""
        return False

    def after_fusion(self, groups: list[list[Task]], tensors: Mapping[str, Tensor], cfg: ArchConfig,
                     ctx: Neighbours) -> None:
        """Adjust the costed tasks once fusion groups are known (before memory planning and tiling)."""


#: Mapping policies by name.
POLICIES = cast(Registry[Policy], registry.POLICIES)

P = TypeVar("P", bound=type[Policy])


def register_policy(cls: P) -> P:
    """Class decorator (or call): register an instance of ``cls`` under ``cls.name``."""
    return POLICIES.register_class(cls, Policy)


def policy_of(cfg: ArchConfig) -> Policy:
    """The policy ``cfg.mapping.policy`` names."""
    return POLICIES.get(cfg.mapping.policy)


def multi_head(ops: Sequence[Op], tensors: Mapping[str, Tensor]) -> bool:
    """True if a multi-op group holds a matmul over several heads (attention streamed head by head)."""
    return len(ops) > 1 and any(op.kind == "matmul" and _groups(op, tensors) > 1 for op in ops)


def _groups(op: Op, tensors: Mapping[str, Tensor]) -> int:
    g = geometry(op, tensors)
    return g.groups if isinstance(g, Gemm) else 1


def heads_tiles(ops: Sequence[Op], tensors: Mapping[str, Tensor], tiles: int) -> int:
    """At least one tile per head of every multi-head matmul of ``ops`` (attention streamed head by head)."""
    for op in ops:
        if op.kind == "matmul":
            g = geometry(op, tensors)
            assert isinstance(g, Gemm)
            tiles = max(tiles, g.groups)
    return tiles
