"""Quantization methods: recipes that rewrite a timm model into a fake-quantized one and calibrate it.

The registry lists method names without importing torch; the recipes themselves import torch on first use.
"""
from quantizer.methods.base import (ENTRY_POINT_GROUP, METHODS, OBSERVERS, Method, QuantConfig, all_methods,
                                    check_method, get_method, method_class, method_description, method_names,
                                    method_origin, register_lazy_method, register_method)

__all__ = ["ENTRY_POINT_GROUP", "METHODS", "OBSERVERS", "Method", "QuantConfig", "all_methods", "check_method",
           "get_method", "method_class", "method_description", "method_names", "method_origin",
           "register_lazy_method", "register_method"]
