"""The SimPy kernel and TLM layer: simulator and clock, generic payloads and transport, ports, FIFOs, the ledger.

It knows nothing of configs, mapping or reports: the hardware models and the run orchestration sit above it.
"""
from archsim.kernel.fifo import Fifo, Tokens
from archsim.kernel.kernel import Simulator
from archsim.kernel.ledger import Ledger, Span
from archsim.kernel.port import Port
from archsim.kernel.tlm import Command, Payload, Service, Target, transport, transport_ranked

__all__ = ["Command", "Fifo", "Ledger", "Payload", "Port", "Service", "Simulator", "Span", "Target", "Tokens", "transport",
           "transport_ranked"]
