"""The built-in mapping policies: ``generic``, ``trio`` (Trio-ViT) and ``p2vit`` (P2-ViT)."""
