"""``p2vit``: P2-ViT's dataflow streams attention head by head (Q·Kᵀ -> Softmax per head); a fused consumer may take
the streamed tensor as any operand."""
from __future__ import annotations

from typing import ClassVar, Mapping, Sequence

from archsim.mapping.policy import Policy, heads_tiles, multi_head, register_policy
from archsim.workloads.ir import Op, Tensor


@register_policy
class P2VitPolicy(Policy):
    name: ClassVar[str] = "p2vit"
    description: ClassVar[str] = "P2-ViT: attention groups streamed head by head"
    streams_any_operand: ClassVar[bool] = True

    def group_tiles(self, ops: Sequence[Op], tensors: Mapping[str, Tensor], min_tiles: int) -> int:
        if len(ops) < 2:
            return 1
        return heads_tiles(ops, tensors, min_tiles)

    def fixed_grain(self, ops: Sequence[Op], tensors: Mapping[str, Tensor]) -> bool:
        """Attention streams exactly one head per tile."""
        return multi_head(ops, tensors)
