"""archsim-example-plugin: how a package extends archsim without editing it.

Importing this module (archsim does, through the ``archsim.plugins`` entry point) registers:

- engine type ``bitserial``: a bit-serial PE array (Stripes, MICRO 2016), :mod:`.engine`;
- op kind ``glu`` and its lowering of ``aten.glu``, :mod:`.ops`;
- model ``example_vit``: a tiny ViT with GLU MLPs, :mod:`.model`.

The quantization method ``minmax_linear`` (:mod:`.method`) is the quantizer's, found through the separate
``quantizer.methods`` entry point. Nothing here imports torch at import time.
"""
from __future__ import annotations

from archsim_example_plugin import engine, model, ops

__all__ = ["engine", "model", "ops"]
__version__ = "0.1.0"
