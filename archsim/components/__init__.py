"""Hardware components: memory targets (DRAM, SRAM buffers, NoC) and compute engines, each charging the ledger."""
