"""flightco: hardware-aware joint search of MobileNet architectures and per-layer bit-widths."""

__version__ = "0.1.0"
