"""Post-training quantization of ViTs (FQ-ViT, P2-ViT, Trio-ViT) with its own model zoo (:mod:`quantizer.zoo`).

Stands alone: no module of it imports archsim (archsim reaches it through ``archsim.workloads.bridge``). Methods
register in :mod:`quantizer.methods` (also from the ``quantizer.methods`` entry-point group).
"""
