"""FLightNN weights: every weight a sum of at most k signed powers of two, k chosen per filter.

FLightNN (Ding, Marculescu et al., DAC 2019) turns each multiply into k shifts and adds. A
layer's weights share one power-of-two grid step ``delta = 2**(ceil(log2 max|W|) - E + 1)``
and every term is ``±delta * 2**j`` with ``j`` in ``0 .. E-1`` (``E`` exponents, 7 by default:
a term is stored as a sign and a 3-bit code, the eighth code meaning "no term"). A projected
weight is therefore an integer times ``delta`` with ``|integer| <= 2**(E-1) + ...`` < 128: the
layer exports exactly as int8 weights with a power-of-two scale through ordinary QCDQ.

Terms are found greedily on the residual (nearest power of two, kept only if it reduces the
residual), which is exact on values that are sums of at most k such terms, so the projection
is idempotent. Training uses a straight-through estimator for the weights.

Per-filter k follows FLightNN's relaxed threshold selection: term ``i >= 2`` of filter ``f`` is
used while the filter's relative residual after ``i-1`` terms exceeds a learned per-layer
threshold ``tau_i``. The forward pass uses the hard decision; the backward pass a sigmoid of
``(residual - tau_i) / temperature``, through which both the task loss and the regularizer
``lambda * cost_weight * E[extra terms]`` move the thresholds: a higher lambda raises them and
leaves fewer terms.

``PowerOfTwoTermsQuant`` is a Brevitas ``tensor_quant`` (it returns value, scale, zero point,
bit width like ``RescalingIntQuant``) and ``FlightWeightQuant`` the injector that installs it,
so a ``QuantConv2d(weight_quant=FlightWeightQuant, weight_flight_terms=2)`` trains, reports its
scale and exports like any other Brevitas layer.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn as nn
from brevitas.quant import Int8WeightPerTensorFloat

DEFAULT_EXPONENTS = 7
DEFAULT_TEMPERATURE = 0.05


def grid_step(w: torch.Tensor, exponents: int = DEFAULT_EXPONENTS) -> torch.Tensor:
    """The layer's power-of-two unit: the smallest term ``delta`` such that the largest term,
    ``delta * 2**(exponents-1)``, is the first power of two at or above ``max|w|``."""
    top = w.detach().abs().max().clamp_min(torch.finfo(w.dtype).tiny)
    return torch.exp2(torch.ceil(torch.log2(top)) - (exponents - 1))


def greedy_terms(r: torch.Tensor, k: int, exponents: int = DEFAULT_EXPONENTS) -> list[torch.Tensor]:
    """``k`` greedy power-of-two terms of ``r`` (already in units of the grid step).

    Each term is the power of two ``2**j`` (``j`` in ``0..exponents-1``) nearest to the
    residual's magnitude, with its sign, or zero where it would not reduce the residual.
    """
    terms = []
    top = float(2 ** (exponents - 1))
    for _ in range(k):
        mag = r.abs()
        a = torch.floor(torch.log2(mag.clamp_min(0.5)))
        up = (mag >= 1.5 * torch.exp2(a)).to(r.dtype)
        p = torch.exp2(a + up).clamp(1.0, top)
        keep = (mag > p / 2).to(r.dtype)
        t = torch.sign(r) * p * keep
        terms.append(t)
        r = r - t
    return terms


def project(w: torch.Tensor, k: int, exponents: int = DEFAULT_EXPONENTS) -> torch.Tensor:
    """Nearest-greedy projection of ``w`` onto sums of at most ``k`` power-of-two terms."""
    delta = grid_step(w, exponents)
    return torch.stack(greedy_terms(w.detach() / delta, k, exponents)).sum(0) * delta


class PowerOfTwoTermsQuant(nn.Module):
    """Brevitas ``tensor_quant``: FLightNN projection with per-filter term selection.

    Returns ``(value, scale, zero_point, bit_width)`` like Brevitas's integer quantizers:
    ``value`` is an integer multiple of ``scale`` (the grid step) that fits 8 signed bits.
    """

    def __init__(self, flight_terms: int, flight_exponents: int = DEFAULT_EXPONENTS,
                 flight_temperature: float = DEFAULT_TEMPERATURE, flight_lambda: float = 0.0) -> None:
        super().__init__()
        if flight_terms < 1:
            raise ValueError(f"flight_terms must be >= 1, got {flight_terms}")
        self.k = int(flight_terms)
        self.exponents = int(flight_exponents)
        self.temperature = float(flight_temperature)
        # thresholds on the relative residual for terms 2..k (term 1 is always used)
        self.thresholds = nn.Parameter(torch.zeros(max(self.k - 1, 0)))
        self.cost_weight = 1.0  # set by the model builder: the layer's share of the network's MACs
        self.lam = float(flight_lambda)  # regularizer strength (FLightNN's lambda)
        self.last_soft_terms: torch.Tensor | None = None
        self.register_buffer("filter_terms", torch.zeros(0, dtype=torch.long), persistent=False)
        self.frozen_terms: torch.Tensor | None = None  # per-filter k fixed by bake_weights

    def forward(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        delta = grid_step(w, self.exponents)
        terms = torch.stack(greedy_terms(w.detach() / delta, self.k, self.exponents))  # k x w.shape
        flat = w.detach().reshape(w.shape[0], -1)
        norm = flat.norm(dim=1).clamp_min(torch.finfo(w.dtype).tiny)
        cumulative = torch.cumsum(terms, 0) * delta
        # relative residual of each filter after 1..k-1 terms
        rho = torch.stack([(flat - cumulative[i].reshape(w.shape[0], -1)).norm(dim=1) / norm
                           for i in range(self.k - 1)]) if self.k > 1 else w.new_zeros(0, w.shape[0])
        hard = (rho > self.thresholds[:, None]).to(w.dtype)
        soft = torch.sigmoid((rho - self.thresholds[:, None]) / self.temperature)
        hard_gate = torch.cumprod(hard, 0)  # term i+1 only while every earlier term was kept
        if self.frozen_terms is not None:
            used = torch.arange(1, self.k, device=w.device)[:, None] < self.frozen_terms[None, :]
            hard_gate = used.to(w.dtype)
        soft_gate = torch.cumprod(soft, 0)
        gate = hard_gate + soft_gate - soft_gate.detach()  # forward hard, backward soft
        shape = (-1, w.shape[0]) + (1,) * (w.dim() - 1)
        gates = torch.cat([w.new_ones(1, w.shape[0]), gate]).reshape(shape)
        chosen = (terms * gates).sum(0) * delta
        value = w + (chosen - w).detach()  # straight-through for the weights
        value = value + (chosen - chosen.detach())  # thresholds learn through the soft gates
        self.last_soft_terms = 1.0 + soft_gate.sum(0)  # expected terms per filter
        self.filter_terms = (1 + hard_gate.sum(0)).long().detach()
        zero = w.new_zeros(())
        return value, delta.reshape(()), zero, w.new_tensor(8.0)

    def regularization(self) -> torch.Tensor:
        """Expected extra terms per filter, weighted by the layer's share of the network's MACs."""
        if self.last_soft_terms is None or self.k == 1:
            return torch.zeros(())
        return self.cost_weight * (self.last_soft_terms - 1.0).mean()


class FlightWeightQuant(Int8WeightPerTensorFloat):
    """Brevitas injector: per-tensor power-of-two grid, weights as sums of power-of-two terms.

    Pass ``weight_flight_terms=k`` (and optionally ``weight_flight_lambda``,
    ``weight_flight_exponents``) to a Brevitas layer, as ``weight_bit_width`` is passed to
    integer quantizers.
    """

    tensor_quant = PowerOfTwoTermsQuant
    flight_terms = 2
    flight_exponents = DEFAULT_EXPONENTS
    flight_temperature = DEFAULT_TEMPERATURE
    flight_lambda = 0.0
    bit_width = 8
    narrow_range = True


def flight_quantizers(model: nn.Module) -> Iterator[tuple[str, PowerOfTwoTermsQuant]]:
    """Every FLightNN weight quantizer of ``model`` with the name of the layer that owns it."""
    for name, module in model.named_modules():
        if isinstance(module, PowerOfTwoTermsQuant):
            yield name.split(".weight_quant")[0], module


def flight_regularization(model: nn.Module) -> torch.Tensor:
    """Sum over FLightNN layers of ``lambda * regularization()``: add it to the training loss."""
    total = torch.zeros(())
    for _, q in flight_quantizers(model):
        if q.lam:
            total = total + q.lam * q.regularization()
    return total


@torch.no_grad()
def term_histograms(model: nn.Module) -> dict[str, list[int]]:
    """For each FLightNN layer, how many filters use 1, 2, ..., k terms (one fresh forward)."""
    out = {}
    for name, q in flight_quantizers(model):
        layer = model.get_submodule(name)
        q(layer.weight)
        counts = torch.bincount(q.filter_terms, minlength=q.k + 1)[1:]
        out[name] = [int(c) for c in counts]
    return out


@torch.no_grad()
def bake_weights(model: nn.Module) -> None:
    """Replace each FLightNN layer's float weights by their projection (an exact fixed point of
    the quantizer, so quantizing them again changes nothing; exporting them is then exact).

    Each filter's term count is frozen at its current value: the greedy split of a baked weight
    may differ from the original one, and re-deciding the count on it could drop a term.
    """
    for name, q in flight_quantizers(model):
        layer = model.get_submodule(name)
        value, *_ = q(layer.weight)
        q.frozen_terms = q.filter_terms.clone()
        layer.weight.copy_(value)
