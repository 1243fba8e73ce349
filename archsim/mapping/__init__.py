"""Mapping: op -> engine assignment, the policies' rules, fusion groups, on-chip residency, tiling -> TaskGraph."""
