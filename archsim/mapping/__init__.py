"""Mapping: op -> engine assignment, dataflow cost models, fusion groups, on-chip residency, tiling, TaskGraph."""
