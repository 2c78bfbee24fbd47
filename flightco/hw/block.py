"""Block-based profiles: per-kernel costs learned from whole-network measurements alone.

Users can rarely time single layers on their device, but they can run a few dozen whole networks
and read latency, energy and peak memory. Networks are sequences of similar kernels, so a cost
model per kind of kernel can be fitted to whole-network figures: a network's latency is

    overhead + sum over kernels of  c[op] . (1, MACs, bytes moved)   (quantized and float apart)

with one coefficient vector per kernel group (conv, dwconv, linear, element-wise), shared by every
kernel of the group whatever its shape: that is how 20-50 networks pin down a dozen coefficients,
where a per-shape table would need every shape measured. Peak memory is not a sum but
``overhead + a . (quantized and float weight bytes at executed bits, peak live activations, kernels)``.
The coefficients are fitted by non-negative least squares on *relative* errors (costs span orders
of magnitude; a negative cost per MAC would be nonsense), with a ridge penalty chosen by
leave-one-out cross-validation; a bootstrap over the networks and the cross-validated residuals
give each prediction an uncertainty.

With a *base* profile (``--base``), the features are instead that profile's own per-group
predictions, and the fit learns its correction: ``overhead + sum_g s_g x base_g`` (memory:
``overhead + s x base memory``).

The profile YAML (``kind: block``) holds the coefficients and bootstrap samples, and the base
profile's data inline when there is one, so it stays self-contained plain data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from flightco.errors import ProfileError
from flightco.hw.profile import METRICS, Costs, HardwareProfile, LayerCost, register_profile_kind, round_up_bits
from flightco.hw.workload import LayerWorkload, peak_activation_bytes, weight_bytes
from flightco.space import FLOAT_BITS
from flightco.yamlio import validate

GROUPS = {"conv": "conv", "dwconv": "dwconv", "linear": "linear", "add": "eltwise", "pool": "eltwise"}
GROUP_NAMES = ("conv", "dwconv", "linear", "eltwise")
SUM_METRICS = ("latency_ms", "energy_mj")
_KERNEL_TERMS = {  # per group: which kernel features it has (a compact set: 20 networks must suffice)
    "conv": ("count", "mmacs_q", "mmacs_f", "mbytes_q", "mbytes_f"),
    "dwconv": ("count", "mmacs_q", "mmacs_f", "mbytes_q"),
    "linear": ("count", "mmacs"),
    "eltwise": ("count", "mbytes"),
}
MEMORY_TERMS = ("overhead", "qweight_kb", "fweight_kb", "peak_act_kb", "kernels")
RIDGE_GRID = (1e-6, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


def kernel_terms() -> list[str]:
    """Names of the sum-metric features: ``overhead`` then ``<group>.<feature>``."""
    return ["overhead"] + [f"{g}.{t}" for g in GROUP_NAMES for t in _KERNEL_TERMS[g]]


def _kernel_row(x: LayerWorkload) -> dict[str, float]:
    """Features of one kernel at executed precision (MACs in millions, bytes in MB).

    Quantized and float kernels get separate MAC and byte terms: on an int8 runtime a float
    convolution can be *cheaper* than a Q/DQ one (no quantize/dequantize work), on a bit-serial
    accelerator far dearer, and non-negative coefficients could express only one of the two if
    they were tied. Quantized MACs are scaled by executed ``w_bits x a_bits / 64`` (1 at W8A8).
    """
    g = GROUPS[x.op]
    macs = x.macs / 1e6
    quantized = x.w_bits < FLOAT_BITS or x.a_bits < FLOAT_BITS
    bits = min(x.w_bits, 8) * min(x.a_bits, 8) / 64.0
    moved = (x.input_bytes + x.output_bytes + x.weight_bytes) / 1e6
    values = {"count": 1.0, "mmacs": macs, "mbytes": moved,
              "mmacs_q": macs * bits if quantized else 0.0, "mmacs_f": 0.0 if quantized else macs,
              "mbytes_q": moved if quantized else 0.0, "mbytes_f": 0.0 if quantized else moved}
    return {f"{g}.{t}": values[t] for t in _KERNEL_TERMS[g]}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricModel(_Strict):
    """One fitted metric: coefficients per feature, bootstrap samples and residual spread."""

    terms: list[str] = Field(min_length=1)
    coef: list[float]
    bootstrap: list[list[float]] = Field(default_factory=list)
    rel_std: float = Field(0.0, ge=0, description="cross-validated relative residual spread")
    ridge: float = Field(0.0, ge=0)
    networks: int = Field(0, ge=0)
    cv_mape: float | None = None

    @field_validator("coef")
    @classmethod
    def _finite(cls, v: list[float]) -> list[float]:
        if any(not math.isfinite(c) or c < 0 for c in v):
            raise ValueError("coefficients must be finite and >= 0")
        return v


class RuntimeSpec(_Strict):
    name: str = ""
    version: str = ""
    threads: int = Field(1, ge=1)


class BlockProfileSpec(_Strict):
    name: str
    kind: str
    description: str = ""
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    supported_bits: list[int] = Field(default_factory=lambda: [8], min_length=1)
    float_bits: int = Field(FLOAT_BITS, gt=0)
    base: dict[str, Any] | None = Field(None, description="the base profile's YAML data (corrections are learned on it)")
    models: dict[str, MetricModel] = Field(min_length=1)
    training: dict[str, Any] = Field(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _metrics(cls, v: dict[str, MetricModel]) -> dict[str, MetricModel]:
        bad = [m for m in v if m not in METRICS]
        if bad:
            raise ValueError(f"unknown metric(s) {', '.join(bad)}; allowed: {', '.join(METRICS)}")
        for m, model in v.items():
            if len(model.coef) != len(model.terms):
                raise ValueError(f"{m}: coef has {len(model.coef)} values for {len(model.terms)} terms")
        return v


class NetworkFeatures:
    """Turns networks into the design matrices of a block profile (plain or on a base profile)."""

    def __init__(self, executed_bits: Any, base: HardwareProfile | None = None) -> None:
        self.executed_bits = executed_bits
        self.base = base

    def terms(self, metric: str) -> list[str]:
        if metric == "memory_kb":
            return ["overhead", "base"] if self.base is not None else list(MEMORY_TERMS)
        if self.base is not None:
            return ["overhead"] + [f"{g}.base" for g in GROUP_NAMES]
        return kernel_terms()

    def executed(self, layers: Sequence[LayerWorkload]) -> list[LayerWorkload]:
        eb = self.executed_bits
        out = []
        for x in layers:
            w, a, o = eb(x.w_bits), eb(x.a_bits), eb(x.out_bits)
            out.append(x if (w, a, o, 0.0) == (x.w_bits, x.a_bits, x.out_bits, x.w_terms) else
                       LayerWorkload(x.name, x.op, x.cin, x.cout, x.h, x.w, x.k, x.stride, x.groups, w, a, o, 0.0))
        return out

    def kernel_rows(self, layers: Sequence[LayerWorkload], metric: str) -> list[dict[str, float]]:
        """Per-kernel feature dicts of a sum metric (latency, energy)."""
        if self.base is not None:
            costs = self.base.layer_costs(layers)
            return [{f"{GROUPS[lw.op]}.base": float(getattr(c, metric))} for lw, c in zip(layers, costs)]
        return [_kernel_row(x) for x in self.executed(layers)]

    def network_row(self, layers: Sequence[LayerWorkload], metric: str) -> np.ndarray:
        terms = self.terms(metric)
        index = {t: i for i, t in enumerate(terms)}
        row = np.zeros(len(terms))
        row[0] = 1.0
        if metric == "memory_kb":
            if self.base is not None:
                row[1] = self.base.cost(layers).memory_kb
                return row
            x = self.executed(layers)
            fw = sum(lw.weight_bytes for lw in x if lw.w_bits >= FLOAT_BITS)
            row[1:] = [(weight_bytes(x) - fw) / 1024, fw / 1024, peak_activation_bytes(x) / 1024, float(len(x))]
            return row
        for kr in self.kernel_rows(layers, metric):
            for t, v in kr.items():
                row[index[t]] += v
        return row


def _nnls_ridge(Z: np.ndarray, ridge: float) -> np.ndarray:
    """Non-negative least squares of ``Z b ~ 1`` plus ``ridge * |b|^2`` (columns pre-scaled)."""
    from scipy.optimize import nnls

    p = Z.shape[1]
    A = np.vstack([Z, math.sqrt(ridge) * np.eye(p)]) if ridge > 0 else Z
    b = np.concatenate([np.ones(len(Z)), np.zeros(p if ridge > 0 else 0)])
    coef, _ = nnls(A, b, maxiter=50 * p)
    return coef


def fit_metric(X: np.ndarray, y: np.ndarray, terms: list[str], bootstrap: int = 50, seed: int = 0) -> MetricModel:
    """Fit ``y ~ X c`` (c >= 0) minimising relative error; ridge by leave-one-out; bootstrap spread.

    Rows are divided by their target (so the residuals are relative errors) and columns scaled to
    unit mean, so that one ridge strength suits every feature whatever its unit.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(y)
    Z = X / y[:, None]
    scale = Z.mean(axis=0)
    scale[scale <= 0] = 1.0
    Zs = Z / scale

    def solve(rows: np.ndarray, ridge: float) -> np.ndarray:
        return _nnls_ridge(Zs[rows], ridge) / scale

    best = (math.inf, RIDGE_GRID[0], np.zeros(n))
    if n >= 4:
        for ridge in RIDGE_GRID:
            rel = np.empty(n)
            for i in range(n):
                keep = np.arange(n) != i
                rel[i] = X[i] @ solve(np.flatnonzero(keep), ridge) / y[i] - 1
            score = float(np.mean(rel**2))
            if score < best[0]:
                best = (score, ridge, rel)
        ridge, cv_rel = best[1], best[2]
    else:
        ridge, cv_rel = 1e-2, np.zeros(n)
    coef = solve(np.arange(n), ridge)
    rng = np.random.default_rng(seed)
    boots = [solve(rng.integers(0, n, n), ridge) for _ in range(bootstrap if n >= 4 else 0)]
    return MetricModel(
        terms=terms, coef=[float(f"{c:.6g}") for c in coef],
        bootstrap=[[float(f"{c:.4g}") for c in b] for b in boots],
        rel_std=float(np.sqrt(np.mean(cv_rel**2))) if n >= 4 else 0.0, ridge=ridge, networks=n,
        cv_mape=float(100 * np.mean(np.abs(cv_rel))) if n >= 4 else None,
    )


@register_profile_kind("block")
class BlockProfile(HardwareProfile):
    """Costs from per-kernel-group coefficients learned on whole networks (see the module docstring)."""

    def __init__(self, spec: BlockProfileSpec, source: str) -> None:
        from flightco.hw.profile import profile_from_data

        self.spec = spec
        self.name = spec.name
        self.base = profile_from_data(spec.base, f"{source}: base") if spec.base is not None else None
        self._bits = {b: self.executed_bits(b) for b in range(1, FLOAT_BITS + 1)}  # tabulated: a hot path
        self.features = NetworkFeatures(self._bits.__getitem__, self.base)
        for metric, model in spec.models.items():
            want = self.features.terms(metric)
            if model.terms != want:
                raise ProfileError(f"{source}: models.{metric}.terms must be {want}, got {model.terms}")
        self.coef = {m: np.array(model.coef) for m, model in spec.models.items()}
        self._cache: dict[str, dict[tuple, float]] = {}
        self.index = {m: {t: i for i, t in enumerate(model.terms)} for m, model in spec.models.items()}

    @classmethod
    def from_yaml(cls, data: dict[str, Any], source: str) -> BlockProfile:
        return cls(validate(BlockProfileSpec, data, source, ProfileError), source)

    def executed_bits(self, bits: int) -> int:
        return round_up_bits(bits, self.spec.supported_bits, self.spec.float_bits)

    def _kernel_metric(self, layers: Sequence[LayerWorkload], metric: str) -> list[float]:
        """Each kernel's cost in ``metric`` (0 for a metric not fitted); cached per kernel shape and
        precision when there is no base profile, since a search meets the same kernels again and again."""
        if metric not in self.coef:
            return [0.0] * len(layers)
        c, index = self.coef[metric], self.index[metric]
        if self.base is not None:
            return [sum(c[index[t]] * v for t, v in kr.items()) for kr in self.features.kernel_rows(layers, metric)]
        cache = self._cache.setdefault(metric, {})
        out = []
        for lw in layers:
            key = lw[1:]
            v = cache.get(key)
            if v is None:
                kr = self.features.kernel_rows([lw], metric)[0]
                v = cache[key] = float(sum(c[index[t]] * x for t, x in kr.items()))
            out.append(v)
        return out

    def layer_costs(self, layers: Sequence[LayerWorkload],
                    executed: Sequence[LayerWorkload] | None = None) -> tuple[LayerCost, ...]:
        """Each kernel's share of the network (the per-network overhead is not in any kernel)."""
        lat = self._kernel_metric(layers, "latency_ms")
        energy = self._kernel_metric(layers, "energy_mj")
        eb = self._bits
        return tuple(LayerCost(lw.name, lw.op, lt, en, eb[lw.w_bits], eb[lw.a_bits])
                     for lw, lt, en in zip(layers, lat, energy))

    def layer_cost(self, layer: LayerWorkload) -> LayerCost:
        return self.layer_costs([layer])[0]

    def independent_layer_costs(self, layers: Sequence[LayerWorkload]) -> tuple[LayerCost, ...]:
        """A layer run alone pays the per-network overhead too."""
        out = []
        for lw in layers:
            c = self.layer_costs([lw])[0]
            lat = c.latency_ms + (self.coef["latency_ms"][0] if "latency_ms" in self.coef else 0.0)
            en = c.energy_mj + (self.coef["energy_mj"][0] if "energy_mj" in self.coef else 0.0)
            out.append(c._replace(latency_ms=lat, energy_mj=en))
        return tuple(out)

    def predict_metric(self, layers: Sequence[LayerWorkload], metric: str) -> tuple[float, float]:
        """Prediction and its standard deviation (bootstrap spread of the fit combined with the
        cross-validated residual spread); ``(0, 0)`` for a metric the profile was not fitted on."""
        if metric not in self.coef:
            return 0.0, 0.0
        row = self.features.network_row(layers, metric)
        value = float(row @ self.coef[metric])
        model = self.spec.models[metric]
        boot = np.array(model.bootstrap) @ row if model.bootstrap else np.array([value])
        std = math.sqrt(float(np.var(boot)) + (model.rel_std * value) ** 2)
        return value, std

    def cost(self, layers: Sequence[LayerWorkload]) -> Costs:
        """Overhead + the kernels' costs for latency and energy; the memory model for memory (0 for
        a metric the profile was not fitted on)."""
        per_layer = self.layer_costs(layers)
        lat = self.coef["latency_ms"][0] + sum(c.latency_ms for c in per_layer) if "latency_ms" in self.coef else 0.0
        en = self.coef["energy_mj"][0] + sum(c.energy_mj for c in per_layer) if "energy_mj" in self.coef else 0.0
        mem = float(self.features.network_row(layers, "memory_kb") @ self.coef["memory_kb"]) if "memory_kb" in self.coef else 0.0
        return Costs(latency_ms=float(lat), energy_mj=float(en), memory_kb=mem, layers=per_layer)


def fit_block_profile(records: Sequence[Any], name: str, *, base: dict[str, Any] | None = None,
                      supported_bits: Sequence[int] = (8,), float_bits: int = FLOAT_BITS,
                      runtime: dict[str, Any] | None = None, bootstrap: int = 50, seed: int = 0,
                      description: str = "", source: str = "") -> dict[str, Any]:
    """The YAML data of a block profile fitted on network records (each metric where present)."""
    from flightco.hw.profile import profile_from_data

    base_profile = profile_from_data(base, "base profile") if base is not None else None
    bits = sorted(set(supported_bits))
    feats = NetworkFeatures(lambda b: round_up_bits(b, bits, float_bits), base_profile)
    models = {}
    for metric in METRICS:
        rows = [r for r in records if metric in r.values]
        if not rows:
            continue
        if len(rows) < 4:
            raise ProfileError(f"{source or 'network table'}: {metric} needs at least 4 measured networks, got {len(rows)}")
        X = np.array([feats.network_row(r.layers, metric) for r in rows])
        y = np.array([r.values[metric] for r in rows])
        models[metric] = fit_metric(X, y, feats.terms(metric), bootstrap, seed).model_dump()
    if not models:
        raise ProfileError(f"{source or 'network table'}: no network has latency_ms, energy_mj or memory_kb")
    return {
        "name": name, "kind": "block", "description": description,
        "runtime": {"name": "", "version": "", "threads": 1, **(runtime or {})},
        "supported_bits": bits, "float_bits": float_bits, "base": base, "models": models,
        "training": {"networks": len(records), "table": source},
    }
