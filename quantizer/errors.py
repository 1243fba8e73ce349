"""Error types that the ``quantizer`` CLI (and archsim, through its bridge) print as one line with an exit code.

Every user-facing failure of the quantizer is a :class:`QuantizerError`; anything else reaching a CLI is a bug.
The quantizer depends on no other package of this repository, so it has its own error types.
"""
from __future__ import annotations


class QuantizerError(Exception):
    """Base of all errors the CLI reports as a single line (exit status ``exit_code``)."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        self.detail = message
        super().__init__(message)


class UsageError(QuantizerError):
    """A bad argument or input file: unknown model or method, bit width out of range, damaged saved model..."""


class UnsupportedModelError(UsageError):
    """A quantization method asked to prepare a model of a family it does not support (e.g. trio on DeiT)."""
