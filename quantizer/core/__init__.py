"""The fake-quantization core: bit types, observers, quantizers and quantized modules."""
