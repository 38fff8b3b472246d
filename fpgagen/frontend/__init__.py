"""QONNX -> fpgagen IR: load the file safely, then lower it to integer dataflow nodes."""

from .load import load_model
from .lower import lower

__all__ = ["load_model", "lower"]
