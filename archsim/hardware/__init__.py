"""Hardware models: memory targets (DRAM channels, SRAM buffers, the NoC) that serve TLM payloads, and the engine
kinds (MAC arrays, non-linear, re-quantization and DMA units), each owning its config keys and cost model."""
from archsim.hardware.kind import ENGINE_KINDS, EngineKind, OpCost, design_peak_macs, kind_of, register_engine_kind

__all__ = ["ENGINE_KINDS", "EngineKind", "OpCost", "design_peak_macs", "kind_of", "register_engine_kind"]
