"""flightco: hardware-aware joint search of MobileNet architectures and per-layer bit-widths.

Python API (imported lazily, so ``import flightco`` stays cheap): :func:`optimize`,
:func:`pareto`, :func:`export`, :func:`price` — see :mod:`flightco.api`.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("optimize", "price"):
        from flightco import api

        return getattr(api, name)
    if name in ("export", "pareto"):  # modules that forward calls to the API (see api.make_module_callable)
        import importlib

        return importlib.import_module(f"flightco.{name}")
    raise AttributeError(f"module 'flightco' has no attribute {name!r}")
