"""Model families the methods recognise, decided from module types (so small custom models work too)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def family_of(model: "nn.Module") -> str | None:
    """``vit`` (ViT/DeiT), ``swin``, ``efficientvit`` (MIT EfficientViT-B), or None."""
    from timm.models.efficientvit_mit import EfficientVit
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, VisionTransformer):
        return "vit"
    if isinstance(model, SwinTransformer):
        return "swin"
    if isinstance(model, EfficientVit):
        return "efficientvit"
    return None
