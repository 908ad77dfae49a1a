"""neuronscope: see what each unit of a vision network has learned to detect."""

__version__ = "0.1.0"

from .errors import NeuronscopeError
from .models import load_model
from .taps import activations, describe_layers, tap

__all__ = ["NeuronscopeError", "__version__", "activations", "describe_layers", "load_model", "tap"]
