"""Fuzz suite (issue 14): mutated configs, YAML workloads and traces through the real ``archsim`` commands."""
