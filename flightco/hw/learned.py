"""Profiles built from measurements: *measured* (exact table look-up) and *learned* (per-op
regressors, NeuralPower / nn-Meter style, that predict unseen layer shapes).

Both keep the measurement rows inside the profile YAML: profiles stay plain data, and a learned
profile refits its regressors when loaded (a second or so), so no pickled model ever travels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.utils.validation import check_is_fitted, validate_data

from flightco.errors import ProfileError
from flightco.hw.profile import Costs, HardwareProfile, LayerCost, register_profile_kind, round_up_bits
from flightco.hw.table import METRIC_COLUMNS, TABLE_OPS, MeasuredLayer, layer_key, parse_rows, table_kernels
from flightco.hw.workload import LayerWorkload
from flightco.space import FLOAT_BITS
from flightco.yamlio import validate


LINEAR_FEATURES = 4  # the first features: log MACs, params, input and output bytes (or the base's log costs)


def layer_features(layer: LayerWorkload, base: HardwareProfile | None = None) -> list[float]:
    """Numeric features of one kernel: sizes, bits and the work and bytes they imply; with a base
    profile also the hardware's structure (arithmetic intensity, pointwise vs spatial kernels).

    With a ``base`` analytic profile (the one a learned profile refines), the first
    ``LINEAR_FEATURES`` are the base's log latency and energy and its log compute cycles and DRAM
    traffic, so the regressor's linear base starts from the analytic model and learns a
    correction rather than the whole cost; without one they are the log work and bytes (a
    roofline in log space)."""
    macs, moved = layer.macs, layer.input_bytes + layer.output_bytes + layer.weight_bytes
    sizes = [
        layer.cin, layer.cout, layer.h, layer.w, layer.k, layer.stride,
        layer.w_bits, layer.a_bits, layer.out_h * layer.out_w,
        (layer.cin // layer.groups) * layer.k * layer.k,  # reduction length: how a kernel fills an array
        layer.w_bits * layer.a_bits,
    ]
    if base is None:  # the feature set measured on onnxruntime tables (README, "Profiles from measurements")
        head = [math.log1p(macs), math.log1p(layer.params), math.log1p(layer.input_bytes),
                math.log1p(layer.output_bytes)]
        return head + sizes
    structure = [
        math.log1p(macs / max(moved, 1.0)),  # arithmetic intensity (MACs per byte)
        float(layer.k == 1),  # pointwise: little reuse, usually memory-bound
        float(layer.groups > 1),  # grouped / depthwise: nothing shared across output channels
    ]
    return base_features(base, layer) + [math.log1p(macs), math.log1p(layer.params)] + sizes + structure


def base_features(base: HardwareProfile, layer: LayerWorkload) -> list[float]:
    """The analytic model's view of one layer: log latency, log energy, log compute cycles, log
    DRAM bits, then log memory-stall cycles and the share of cycles spent computing."""
    cost = base.layer_cost(layer)
    compute = dram = stall = 0.0
    stats = getattr(base, "stats", None)
    if stats is not None:
        st = stats(layer)
        st = st[0] if isinstance(st, tuple) else st
        compute = float(getattr(st, "compute_cycles", 0.0))
        dram = float(getattr(st, "dram_bits", 0.0))
        stall = float(getattr(st, "stall_cycles", 0.0))
    busy = compute / (compute + stall) if compute + stall > 0 else 0.0
    return [math.log(max(cost.latency_ms, 1e-12)), math.log(max(cost.energy_mj, 1e-15)), math.log1p(compute),
            math.log1p(dram), math.log1p(stall), busy]


class LayerCostRegressor(RegressorMixin, BaseEstimator):
    """A linear model of log cost in log work and bytes (a roofline in log space), corrected by
    gradient-boosted trees on all layer features; fitted in log space when targets are positive
    (costs span orders of magnitude; relative error is what matters).

    Trees alone cannot extrapolate to shapes outside the few measured ones; the linear base
    does, and the trees only learn what it misses. On one 200-layer onnxruntime table, fitted on
    10 % of the rows (three splits): 47-51 % of the other rows within ±10 % against 24-38 % for
    trees alone, and whole networks after calibration 86 % against 60 % (README, "Profiles from
    measurements"; the same layers timed twice agree within ±10 % for only 74 % of them).

    Follows the scikit-learn estimator contract (``get_params``/``set_params``/``clone`` work).

    Example:
        >>> import numpy as np
        >>> X = np.arange(40, dtype=float).reshape(20, 2)
        >>> est = LayerCostRegressor(n_estimators=20).fit(X, X[:, 0] + 1)
        >>> est.predict(X[:2]).shape
        (2,)
    """

    def __init__(self, n_estimators: int = 100, max_depth: int = 2, learning_rate: float = 0.05,
                 log_target: bool = True, linear_base: bool = True, random_state: int = 0) -> None:
        self.linear_base = linear_base
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.log_target = log_target
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> LayerCostRegressor:
        X, y = validate_data(self, X, y, y_numeric=True)
        self.log_space_ = bool(self.log_target and np.all(y > 0))
        target = np.log(y) if self.log_space_ else y
        self.base_ = None
        if self.linear_base and X.shape[1] >= LINEAR_FEATURES and len(y) >= 3:
            with np.errstate(divide="ignore", invalid="ignore"):  # RidgeCV's leave-one-out on tiny data
                self.base_ = RidgeCV(alphas=np.logspace(-3, 2, 12)).fit(X[:, :LINEAR_FEATURES], target)
            target = target - self.base_.predict(X[:, :LINEAR_FEATURES])
        self.model_ = GradientBoostingRegressor(
            n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate,
            random_state=self.random_state,
        ).fit(X, target)
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        out = self.model_.predict(X)
        if self.base_ is not None:
            out = out + self.base_.predict(X[:, :LINEAR_FEATURES])
        return np.exp(out) if self.log_space_ else out


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuntimeSpec(_Strict):
    name: str
    version: str = ""
    threads: int = Field(1, ge=1)


class TableProfileSpec(_Strict):
    name: str
    kind: str
    version: str = Field("1", description="bump when refitted on new measurements; searches record it")
    description: str = ""
    sources: list[str] = Field(default_factory=list)
    validation: list[dict[str, Any]] | dict[str, Any] | None = Field(
        None, description="what the profile was compared with and how well it did (`profile eval --record`)")
    runtime: RuntimeSpec
    supported_bits: list[int] = Field(default_factory=lambda: [8], min_length=1)
    float_bits: int = Field(FLOAT_BITS, gt=0)
    elementwise_ns_per_element: float = Field(1.0, gt=0, description="add/pool kernels, measured")
    session_overhead_ms: float = Field(0.0, ge=0, description="fixed cost of one runtime call, in every row")
    network_scale: float = Field(1.0, gt=0, description="whole-network correction, fitted by `profile calibrate`")
    network_offset_ms: float = Field(0.0, description="whole-network correction, fitted by `profile calibrate`")
    network_per_kernel_ms: float = Field(
        0.0, description="whole-network correction per conv/linear kernel (what an isolated timing pays around its "
                         "kernel and a network does not), fitted by `profile calibrate`")
    network_calibration: dict[str, Any] = Field(default_factory=dict, description="how the correction was fitted")
    estimator: dict[str, Any] = Field(default_factory=dict)
    base: dict[str, Any] | None = Field(
        None, description="an analytic profile (its YAML data) whose costs are features: the fit learns its correction")
    columns: list[str]
    rows: list[list[Any]] = Field(min_length=1)

    @field_validator("supported_bits")
    @classmethod
    def _bits(cls, v: list[int]) -> list[int]:
        if any(b < 1 or b > 32 for b in v):
            raise ValueError("supported_bits must lie between 1 and 32")
        return sorted(set(v))


def _kernel_key(x: LayerWorkload) -> tuple:
    return x[1:]  # every field but the name


class _TableProfile(HardwareProfile):
    """Shared by measured and learned profiles: executed precision and the measurement rows."""

    def __init__(self, spec: TableProfileSpec, source: str) -> None:
        self.spec = spec
        self.name = spec.name
        raw = [dict(zip(spec.columns, map(lambda v: "" if v is None else str(v), row))) for row in spec.rows]
        measured = parse_rows(raw, f"{source}: rows")
        # the table holds what the runtime executes: requested bits map to executed bits
        self.measured = [MeasuredLayer(self.at_executed_precision(m.layer), m.values) for m in measured]
        self.metrics = [m for m in METRIC_COLUMNS if all(m in x.values for x in self.measured)]
        self._cache: dict[tuple, tuple[float, float]] = {}

    @classmethod
    def from_yaml(cls, data: dict[str, Any], source: str) -> _TableProfile:
        return cls(validate(TableProfileSpec, data, source, ProfileError), source)

    def executed_bits(self, bits: int) -> int:
        return round_up_bits(bits, self.spec.supported_bits, self.spec.float_bits)

    def assumptions(self) -> list[str]:
        """One line per assumption, for `flightco profile show`."""
        s = self.spec
        ops = sorted({m.layer.op for m in self.measured})
        out = [f"{len(self.measured)} measured rows ({', '.join(ops)}) on {s.runtime.name} {s.runtime.version} "
               f"with {s.runtime.threads} thread(s)",
               f"elementwise kernels {s.elementwise_ns_per_element:g} ns per element; per-call overhead "
               f"{s.session_overhead_ms * 1e3:.1f} us (paid once per network)"]
        if s.network_calibration:
            out.append(f"whole networks = {s.network_scale:.4g} x kernels {s.network_per_kernel_ms * 1e3:+.2f} us per "
                       f"conv/linear kernel {s.network_offset_ms * 1e3:+.1f} us "
                       f"(fitted on {s.network_calibration.get('networks', '?')} measured networks)")
        else:
            out.append("no whole-network calibration (`flightco profile calibrate`)")
        return out

    def _elementwise(self, layer: LayerWorkload, x: LayerWorkload) -> LayerCost:
        ms = layer.macs * self.spec.elementwise_ns_per_element * 1e-6
        return LayerCost(layer.name, layer.op, ms, 0.0, x.w_bits, x.a_bits)

    def predict(self, layers: Sequence[LayerWorkload]) -> dict[str, np.ndarray]:
        """Per-layer predictions for every metric this profile knows."""
        raise NotImplementedError

    def cost(self, layers: Sequence[LayerWorkload]) -> Costs:
        """Whole network: the kernels (without per-call overhead), corrected by the network-level
        calibration fitted on a few measured networks, plus the per-call overhead once."""
        base = super().cost(layers)
        s = self.spec
        kernels = s.network_scale * base.latency_ms
        if s.network_per_kernel_ms:
            fitted = kernels + s.network_per_kernel_ms * table_kernels(layers)
            kernels = max(fitted, 0.1 * kernels)  # a correction fitted on other networks never prices below a tenth
        return replace(base, latency_ms=kernels + s.network_offset_ms + s.session_overhead_ms)

    def independent_layer_costs(self, layers: Sequence[LayerWorkload]) -> tuple[LayerCost, ...]:
        """One runtime call per layer, as the table was measured: each pays the overhead."""
        oh = self.spec.session_overhead_ms
        return tuple(c._replace(latency_ms=c.latency_ms + oh) for c in self.layer_costs(layers))

    def layer_costs(self, layers: Sequence[LayerWorkload],
                    executed: Sequence[LayerWorkload] | None = None) -> tuple[LayerCost, ...]:
        """Per-kernel costs inside a network (the per-call overhead taken out of each).

        Predictions are cached per kernel shape and precision: a search meets the same kernels
        again and again, and a regressor call costs far more than a dictionary look-up.
        """
        if executed is None:
            executed = [self.at_executed_precision(layer) for layer in layers]
        keys = [_kernel_key(x) for x in executed]
        misses = [i for i, (x, k) in enumerate(zip(executed, keys)) if x.op in TABLE_OPS and k not in self._cache]
        if misses:
            unique = list({keys[i]: i for i in misses}.values())
            preds = self.predict([executed[i] for i in unique])
            oh = self.spec.session_overhead_ms
            for j, i in enumerate(unique):
                raw = float(preds["latency_ms"][j])
                energy = float(preds["energy_mj"][j]) if "energy_mj" in preds else 0.0
                self._cache[keys[i]] = (max(raw - oh, 0.1 * raw), energy)
        out: list[LayerCost] = []
        for layer, x, key in zip(layers, executed, keys):
            if x.op not in TABLE_OPS:
                out.append(self._elementwise(layer, x))
                continue
            lat, energy = self._cache[key]
            out.append(LayerCost(layer.name, layer.op, lat, energy, x.w_bits, x.a_bits))
        return tuple(out)

    def layer_cost(self, layer: LayerWorkload) -> LayerCost:
        return self.layer_costs([layer])[0]


@register_profile_kind("measured")
class MeasuredProfile(_TableProfile):
    """Exact look-up of measured layers. A layer that was not measured is an error, never 0 ms."""

    def __init__(self, spec: TableProfileSpec, source: str) -> None:
        super().__init__(spec, source)
        self.table = {layer_key(m.layer): m.values for m in self.measured}

    def predict(self, layers: Sequence[LayerWorkload]) -> dict[str, np.ndarray]:
        out = {m: np.empty(len(layers)) for m in self.metrics}
        for i, layer in enumerate(layers):
            values = self.table.get(layer_key(layer))
            if values is None:
                raise ProfileError(f"{self.name}: layer {layer.op} cin={layer.cin} cout={layer.cout} h={layer.h} "
                                   f"k={layer.k} stride={layer.stride} W{layer.w_bits}A{layer.a_bits} was not measured; "
                                   "use a learned profile to predict unseen shapes")
            for m in self.metrics:
                out[m][i] = values[m]
        return out


@register_profile_kind("learned")
class LearnedProfile(_TableProfile):
    """One regressor per op and metric, fitted on the profile's measurement rows at load time."""

    def __init__(self, spec: TableProfileSpec, source: str) -> None:
        super().__init__(spec, source)
        self.base: HardwareProfile | None = None
        if spec.base is not None:
            from flightco.hw.profile import profile_from_data

            if spec.base.get("kind") != "analytic":
                raise ProfileError(f"{source}: base must be an analytic profile, got kind {spec.base.get('kind')!r}")
            self.base = profile_from_data(spec.base, f"{source}: base")
        self.models: dict[tuple[str, str], LayerCostRegressor] = {}
        for op in TABLE_OPS:
            rows = [m for m in self.measured if m.layer.op == op]
            if not rows:
                continue
            X = np.array([layer_features(m.layer, self.base) for m in rows])
            for metric in self.metrics:
                y = np.array([m.values[metric] for m in rows])
                self.models[(op, metric)] = LayerCostRegressor(**spec.estimator).fit(X, y)

    def predict(self, layers: Sequence[LayerWorkload]) -> dict[str, np.ndarray]:
        out = {m: np.empty(len(layers)) for m in self.metrics}
        by_op: dict[str, list[int]] = {}
        for i, layer in enumerate(layers):
            by_op.setdefault(layer.op, []).append(i)
        for op, idx in by_op.items():
            X = np.array([layer_features(layers[i], self.base) for i in idx])
            for metric in self.metrics:
                model = self.models.get((op, metric))
                if model is None:
                    raise ProfileError(f"{self.name}: no {op} layers were measured, so {op} costs cannot be predicted")
                out[metric][idx] = model.predict(X)
        return out


def fit_network_calibration(kernel_sums_ms: np.ndarray, measured_ms: np.ndarray) -> tuple[float, float]:
    """Scale and offset mapping summed kernel predictions onto measured whole networks,
    minimising relative error: ``measured ~ scale * kernels + offset``.

    Isolated-layer timings miss what a fused network does differently (memory reuse between
    kernels, per-node scheduling); a handful of measured networks fixes the systematic part,
    as block-based performance models do.
    """
    p = np.asarray(kernel_sums_ms, dtype=float)
    m = np.asarray(measured_ms, dtype=float)
    A = np.stack([p / m, 1.0 / m], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(A, np.ones_like(m), rcond=None)
    if scale <= 0:  # degenerate fit: fall back to a pure scale
        scale, offset = float(np.exp(np.mean(np.log(m / p)))), 0.0
    return float(scale), float(offset)


def fit_network_correction(kernel_sums_ms: np.ndarray, kernel_counts: np.ndarray,
                           measured_ms: np.ndarray) -> tuple[float, float, float]:
    """``(scale, per_kernel_ms, offset_ms)`` with ``measured ~ scale * kernels + per_kernel *
    count + offset``, minimising relative error; ``count`` is each network's conv/linear kernels.

    Why a per-kernel term: every row of a layer table is a graph of its own, in which onnxruntime
    runs the kernel between a Quantize, layout Transposes and a Dequantize, each a node dispatch
    a network pays once at its ends, not per kernel. A scale alone spreads that fixed cost over
    the compute (wrong for networks of many small kernels or few large ones). Measured here on
    200 random networks (benchmarks/ort_profile.py, README): 97 % within ±10 % against 89.5 % with
    scale and offset alone. Falls back to :func:`fit_network_calibration` where the term cannot
    be told apart (fewer than 5 networks, all with the same kernel count) or the fit is degenerate.
    """
    p = np.asarray(kernel_sums_ms, dtype=float)
    c = np.asarray(kernel_counts, dtype=float)
    m = np.asarray(measured_ms, dtype=float)
    if len(m) >= 5 and np.ptp(c) > 0:
        A = np.stack([p / m, c / m, 1.0 / m], axis=1)
        (scale, per_kernel, offset), *_ = np.linalg.lstsq(A, np.ones_like(m), rcond=None)
        fitted = scale * p + per_kernel * c
        if scale > 0 and np.all(fitted > 0.1 * scale * p):
            return float(scale), float(per_kernel), float(offset)
    scale, offset = fit_network_calibration(p, m)
    return scale, 0.0, offset


def profile_yaml(name: str, kind: str, measured: list[MeasuredLayer], runtime: dict[str, Any],
                 supported_bits: list[int], float_bits: int, elementwise_ns: float, overhead_ms: float = 0.0,
                 description: str = "", base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The YAML data of a measured or learned profile holding ``measured``."""
    metrics = [m for m in METRIC_COLUMNS if all(m in x.values for x in measured)]
    columns = ["op", "cin", "cout", "h", "w", "k", "stride", "groups", "w_bits", "a_bits", *metrics]
    rows = [[x.layer.op, x.layer.cin, x.layer.cout, x.layer.h, x.layer.w, x.layer.k, x.layer.stride,
             x.layer.groups, x.layer.w_bits, x.layer.a_bits, *[float(f"{x.values[m]:.6g}") for m in metrics]]
            for x in measured]
    return {
        "name": name, "kind": kind, "description": description, "runtime": runtime,
        "supported_bits": supported_bits, "float_bits": float_bits,
        "elementwise_ns_per_element": elementwise_ns, "session_overhead_ms": overhead_ms,
        **({"base": {k: v for k, v in base.items() if k != "validation"}} if base else {}),
        "columns": columns, "rows": rows,
    }
