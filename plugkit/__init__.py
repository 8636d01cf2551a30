"""plugkit: plugin-based generative models with a native core."""

__version__ = "0.1.0"
