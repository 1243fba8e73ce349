"""Quantization methods: recipes that rewrite a timm model into a fake-quantized one and calibrate it."""
from quantizer.methods.base import METHODS, Method, QuantConfig, get_method, register_method

__all__ = ["METHODS", "Method", "QuantConfig", "get_method", "register_method"]
