"""The area proxy: a design's silicon area estimated from its loaded config alone, no simulation.

An engine's area is the arithmetic its kind says it is built from (:meth:`EngineKind.area_units`) priced with the
config's ``area:`` per-unit figures (45 nm, docs/configuration.md "Area proxy"); a buffer's is its bitcells over
the SRAM array efficiency. Operand widths other than the published 8-bit figures are interpolated:

* an integer multiplier of ``b`` x ``b`` bits: ``int_mult8_um2 x (b / 8)²`` (its partial-product array grows with
  the square of the width);
* an integer adder of ``b`` bits: ``int_add8_um2 x b / 8`` (a ripple or prefix adder grows about linearly; at 32 bits
  this gives 144 µm² against the 137 µm² Horowitz publishes);
* a floating-point lane of 16 or 32 bits: one multiplier plus one adder of that format, as published;
* SRAM: ``capacity bits x sram_bitcell_um2 / sram_array_efficiency``.

A component whose config gives ``area_mm2`` takes that figure instead. Wires, control, register files outside the
MAC datapath, shifters, the NoC and I/O are not counted: the result compares designs within one technology, it
does not predict a die size. Torch-free and cheap (a loop over the engines and buffers).
"""
from __future__ import annotations

from dataclasses import dataclass

from archsim.config.load import ArchConfig
from archsim.config.schema import AreaSpec
from archsim.hardware.kind import AreaUnits, kind_of

UM2_PER_MM2 = 1e6


@dataclass(frozen=True)
class AreaReport:
    """A design's area in mm²: the total, each engine's and buffer's share, and what it was computed from.

    ``multipliers`` counts the MAC multipliers of the engines that do MACs (adder trees and re-quantization lanes
    left out); ``sram_kib`` the on-chip buffers' capacity. ``source`` is ``derived`` (every component from the
    per-unit figures), ``given`` (every component's ``area_mm2`` came from the config) or ``mixed``; ``given`` names
    the components the config gave, ``notes`` the engines whose area could not be derived and counts 0.
    """

    total_mm2: float
    by_component: dict[str, float]
    multipliers: int
    sram_kib: float
    source: str
    given: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def multiplier_um2(spec: AreaSpec, bits: int) -> float:
    """A ``bits`` x ``bits`` integer multiplier: the 8-bit figure scaled by (bits / 8)²."""
    return spec.int_mult8_um2 * bits * bits / 64


def adder_um2(spec: AreaSpec, bits: int) -> float:
    """A ``bits``-wide integer adder: the 8-bit figure scaled by bits / 8."""
    return spec.int_add8_um2 * bits / 8


def fp_lane_um2(spec: AreaSpec, bits: int) -> float:
    """One floating-point multiplier plus one adder of 16 or 32 bits."""
    if bits == 16:
        return spec.fp16_mult_um2 + spec.fp16_add_um2
    if bits == 32:
        return spec.fp32_mult_um2 + spec.fp32_add_um2
    raise ValueError(f"floating-point lanes are 16 or 32 bits wide, got {bits}")


def units_um2(spec: AreaSpec, units: AreaUnits) -> float:
    """Area of the arithmetic ``units`` in µm²."""
    area = units.multipliers * multiplier_um2(spec, units.multiplier_bits)
    area += units.adders * adder_um2(spec, units.adder_bits)
    if units.fp_lanes:
        area += units.fp_lanes * fp_lane_um2(spec, units.fp_bits)
    return area


def sram_um2(spec: AreaSpec, capacity_kib: float) -> float:
    """An SRAM of ``capacity_kib``: its bitcells over the array efficiency, in µm²."""
    return capacity_kib * 1024 * 8 * spec.sram_bitcell_um2 / spec.sram_array_efficiency


def area_of(cfg: ArchConfig) -> AreaReport:
    """The area proxy of ``cfg``: engines in declaration order, then buffers; deterministic."""
    spec = cfg.area
    um2: dict[str, float] = {}
    given: list[str] = []
    notes: list[str] = []
    multipliers = 0
    for name, ecfg in cfg.engines.items():
        kind = kind_of(ecfg)
        units = kind.area_units(ecfg, cfg.defaults)
        if kind.peak_macs_per_cycle(ecfg) > 0:
            multipliers += units.multipliers
        if ecfg.area_mm2 is not None:
            um2[name] = ecfg.area_mm2 * UM2_PER_MM2
            given.append(name)
            continue
        um2[name] = units_um2(spec, units)
        if units.note:
            notes.append(f"{name}: {units.note}")
    for name, buf in cfg.buffers.items():
        if buf.area_mm2 is not None:
            um2[name] = buf.area_mm2 * UM2_PER_MM2
            given.append(name)
        else:
            um2[name] = sram_um2(spec, buf.capacity_kib)
    source = "derived" if not given else "given" if len(given) == len(um2) else "mixed"
    return AreaReport(
        total_mm2=sum(um2.values()) / UM2_PER_MM2,
        by_component={name: value / UM2_PER_MM2 for name, value in um2.items()},
        multipliers=multipliers,
        sram_kib=sum(b.capacity_kib for b in cfg.buffers.values()),
        source=source,
        given=tuple(given),
        notes=tuple(notes),
    )


__all__ = ["AreaReport", "adder_um2", "area_of", "fp_lane_um2", "multiplier_um2", "sram_um2", "units_um2"]
