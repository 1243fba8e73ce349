"""The SimPy kernel and TLM layer: simulator and clock, generic payloads and transport, FIFOs, the ledger.

It knows nothing of configs, mapping or reports: the hardware models and the run orchestration sit above it.
"""
from archsim.kernel.fifo import Fifo
from archsim.kernel.kernel import Simulator
from archsim.kernel.ledger import Ledger, Span
from archsim.kernel.tlm import Command, Payload, Service, Target, transport

__all__ = ["Command", "Fifo", "Ledger", "Payload", "Service", "Simulator", "Span", "Target", "transport"]
