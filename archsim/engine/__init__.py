"""The SimPy kernel layer: simulator and clock, TLM-style payloads and transport, FIFOs, watchdog."""
