"""Shared helpers of the quantizer tests: a small ViT with a trained-scale class token, seeded image batches."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

BATCH = 2


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two tensors, flattened."""
    return F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def images(count: int, seed: int, size: int = 32, batch: int = BATCH) -> list[torch.Tensor]:
    """``count`` seeded N(0, 1) image batches of shape (batch, 3, size, size)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, size, size, generator=g) for _ in range(count)]


def small_vit(**kwargs: Any) -> nn.Module:
    """A 2-block ViT on 32x32 images whose cls token has the scale of a trained one.

    timm initialises the class token at std 1e-6, below one 8-bit step of the residual stream, so a random
    model's logits (read from that token) would not survive any 8-bit residual quantizer.
    """
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4, num_classes=10,
                              **kwargs).eval()
    return with_trained_scale_cls(model) if model.cls_token is not None else model


def with_trained_scale_cls(model: nn.Module) -> nn.Module:
    """Give a random-init ViT a cls token at the scale of its patch tokens, as a trained model has.

    timm initializes cls_token ~ N(0, 1e-6²) and pos_embed ~ N(0, 0.02²), so the cls token enters the residual
    stream at |x| ≈ 0.016, below one step (≈ 0.021) of the per-tensor uint8 quantizer that the patch tokens
    (|x| ≈ 0.46, range ±2.7 for N(0, 1) images) impose; the logits read only the cls token, so any per-tensor
    8-bit residual quantizer erases them. A trained DeiT's cls token is of the patch tokens' order.
    """
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.cls_token.copy_(torch.randn(model.cls_token.shape, generator=g) * 0.5)
    return model
