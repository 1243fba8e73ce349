"""``generic``: ``mapping.assign`` and fusion as written, with no accelerator-specific rule."""
from __future__ import annotations

from typing import ClassVar

from archsim.mapping.policy import Policy, register_policy


@register_policy
class GenericPolicy(Policy):
    name: ClassVar[str] = "generic"
    description: ClassVar[str] = "assign and fuse as written; a fused consumer streams its first operand"
