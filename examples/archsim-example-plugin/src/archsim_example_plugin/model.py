"""``example_vit``: a tiny ViT (64 x 64 images, 8 x 8 patches, width 96, depth 2, 3 heads) with GLU MLPs.

It is a timm ``VisionTransformer`` (so ViT quantization methods recognise it) whose MLP is
``fc1 (96 -> 2 x 384) -> GLU -> fc2 (384 -> 96)``: the GLU-variant feed-forward of Shazeer (arXiv:2002.05202), here
with the sigmoid gate of the original GLU. Small enough to trace and simulate in about a second.

torch and timm are imported inside the builder only, so importing this module stays torch-free.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from archsim.extend import register_model

if TYPE_CHECKING:
    from torch import nn

NAME = "example_vit"
PATCH = 8
EMBED_DIM = 96
DEPTH = 2
HEADS = 3
MLP_RATIO = 4.0


@functools.cache
def glu_mlp_class() -> type[nn.Module]:
    """The MLP block class, defined on first use (so torch is imported only then) and once per process."""
    from torch import nn

    class GluMlp(nn.Module):
        """fc1 to twice the hidden width, GLU halves it, fc2 back: timm's ``mlp_layer`` constructor signature."""

        def __init__(self, in_features: int, hidden_features: int | None = None, out_features: int | None = None,
                     act_layer: Any = None, norm_layer: Any = None, bias: bool = True, drop: float = 0.0,
                     **factory: Any) -> None:
            super().__init__()
            hidden = hidden_features or in_features
            self.fc1 = nn.Linear(in_features, 2 * hidden, bias=bias, **factory)
            self.act = nn.GLU(dim=-1)
            self.fc2 = nn.Linear(hidden, out_features or in_features, bias=bias, **factory)

        def forward(self, x: Any) -> Any:
            return self.fc2(self.act(self.fc1(x)))

    return GluMlp


@register_model(NAME, default_resolution=64, multiple_of=PATCH,
                description="tiny GLU ViT (patch 8, width 96, depth 2, 3 heads) from archsim-example-plugin")
def build_example_vit(resolution: int, batch: int) -> tuple[nn.Module, tuple[int, ...]]:
    """The model at ``resolution`` (a multiple of the patch size) with random weights, and its input shape."""
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(img_size=resolution, patch_size=PATCH, embed_dim=EMBED_DIM, depth=DEPTH,
                              num_heads=HEADS, mlp_ratio=MLP_RATIO, num_classes=10, mlp_layer=glu_mlp_class())
    return model, (batch, 3, resolution, resolution)
