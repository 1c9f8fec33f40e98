"""rastOS scheduler: routing, flow control and a digital twin for LLM inference fleets."""

from rastos.errors import RastosError

__all__ = ["RastosError", "__version__"]
__version__ = "0.1.0"
