"""archsim's own registrations: the built-in engine kinds and mapping policies (the op kinds register with the IR).

:mod:`archsim.registry` imports this module by name before any plugin, so the built-ins register through the same
public calls a plugin uses and are never hidden by a plugin that loads first.
"""
from __future__ import annotations

import archsim.hardware.cpu  # noqa: F401  (mobile_cpu)
import archsim.hardware.dma  # noqa: F401  (dma)
import archsim.hardware.gpu  # noqa: F401  (gpu_roofline)
import archsim.hardware.mac  # noqa: F401  (mat, rmac, pe_array)
import archsim.hardware.requant  # noqa: F401  (requant)
import archsim.hardware.systolic  # noqa: F401  (systolic)
import archsim.hardware.vector  # noqa: F401  (nonlinear)
import archsim.mapping.policies.generic  # noqa: F401
import archsim.mapping.policies.p2vit  # noqa: F401
import archsim.mapping.policies.trio  # noqa: F401
import archsim.workloads.kinds  # noqa: F401  (the IR's op kinds)
