"""archsim: an event-driven, TLM-style simulator of accelerators for quantized Vision Transformers.

The simulator core (config, mapping, engine, components, report) never imports torch; only the trace front end
(archsim.workloads.extract / zoo) and the quantizer do.
"""
from archsim.api import run_stages, simulate
from archsim.config import ArchConfig, load_config
from archsim.result import Result
from archsim.workloads.ir import Workload

__all__ = ["ArchConfig", "Result", "Workload", "load_config", "run_stages", "simulate"]
