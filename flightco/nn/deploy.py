"""The deployable form of a trained model: BatchNorm folded into its convolution, every
tensor an integer kernel reads or writes quantized.

onnxruntime runs a convolution as ``QLinearConv`` only when its input and weights come from
DequantizeLinear nodes, its bias from an int32 DequantizeLinear, and its sole consumer is a
QuantizeLinear (or a ReLU that the Q makes redundant). A trained :class:`MobileNet` has
BatchNorm between the conv and its activation quantizer, and two float tensors no quantizer
sees: the linear-bottleneck output added to a residual, and the last block's output before
the pooling. :func:`fold_for_deploy` returns a copy where

- each ``Conv + BN`` is one convolution with a bias (``w' = w * g / sqrt(v + eps)``,
  ``b' = beta - mean * g / sqrt(v + eps)``). The weight quantizer is per output channel with
  max-of-abs scaling, so scaling a channel scales its quantization grid with it and the fold is
  exact up to float rounding (no retraining needed). FLightNN layers (one power-of-two grid per
  layer) cannot keep their grid under a per-channel fold: they become per-channel 8-bit layers,
  which the report says.
- a residual block's projection output and the last block's output get an 8-bit signed
  quantizer (``output_quant`` / ``pool_quant``), calibrated on training images, so the
  residual add and the pooling run as ``QLinearAdd`` / integer pooling.

The folded model's accuracy is measured again by its caller: it is the accuracy a deployment
really has.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn as nn
from brevitas import nn as qnn

from flightco.nn import quant
from flightco.nn.flight import bake_weights, flight_quantizers
from flightco.nn.mobilenet import ConvBNAct, InvertedResidual, MobileNet

REQUANT_BITS = 8  # bits of the added residual / pooling quantizers (onnxruntime's integer kernels are 8-bit)


def _weight_bits(conv: nn.Module) -> int | None:
    """Weight bit-width of a conv layer; ``None`` for a float layer."""
    if not isinstance(conv, qnn.QuantConv2d):
        return None
    return int(conv.quant_weight().bit_width)


def fold_conv_bn(conv: nn.Module, bn: nn.BatchNorm2d, is_flight: bool) -> nn.Module:
    """One convolution equal to ``bn(conv(x))`` in eval mode, with a bias; quantized per
    output channel at the conv's weight bits (8 for a FLightNN layer), float stays float."""
    gain = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = bn.bias.detach() - bn.running_mean * gain
    w = conv.weight.detach() * gain.view(-1, 1, 1, 1)
    bits = 8 if is_flight else _weight_bits(conv)
    cin, cout = conv.in_channels, conv.out_channels
    k, stride, groups = conv.kernel_size[0], conv.stride[0], conv.groups
    new = quant.conv2d(cin, cout, k, stride, groups, w_bits=bits if bits is not None else quant.FLOAT_BITS, bias=True)
    with torch.no_grad():
        new.weight.copy_(w)
        new.bias.copy_(bias)
    return new


def fold_for_deploy(model: MobileNet, calibration: torch.Tensor, batch_size: int = 128,
                    signed_activations: bool = False) -> MobileNet:
    """A folded, fully quantized copy of ``model`` (see the module docstring), its new
    quantizers calibrated on ``calibration`` images (train-mode passes without gradients; there
    is no BatchNorm left to disturb).

    ``signed_activations`` (TensorRT, which has no uint8): 8-bit ReLU outputs keep their learned
    range at 7 bits of magnitude (codes 0..127, about twice the step), so they fit signed int8
    exactly and PyTorch computes what the file computes."""
    model = copy.deepcopy(model).eval()
    if signed_activations:
        for module in model.modules():
            if isinstance(module, qnn.QuantReLU):
                width = module.act_quant.fused_activation_quant_proxy.tensor_quant.msb_clamp_bit_width_impl.bit_width.value
                if float(width) > 7:
                    width.fill_(7.0)
    flight = {name.removesuffix(".conv") for name, _ in flight_quantizers(model)}
    bake_weights(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, ConvBNAct) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = fold_conv_bn(module.conv, module.bn, name in flight)
            module.bn = nn.Identity()
    batches = [calibration[i:i + batch_size] for i in range(0, len(calibration), batch_size)]
    steps = max(1, len(batches) - 1)
    for block in model.blocks:
        assert isinstance(block, InvertedResidual)
        if block.use_skip:
            block.output_quant = quant.identity(REQUANT_BITS, steps)
    if len(model.blocks):
        model.pool_quant = quant.identity(REQUANT_BITS, steps)
    calibrate(model, batches)
    return model.eval()


def calibrate(model: nn.Module, batches: list[torch.Tensor], forward: Callable | None = None) -> None:
    """Run ``batches`` through ``model`` in train mode without gradients, so quantizers still
    collecting statistics finish (those already trained keep their learned scale)."""
    model.train()
    with torch.no_grad():
        for _ in range(2):  # the last step of collection initialises the learned scale
            for x in batches:
                (forward or model)(x)
    model.eval()


def snap_biases(model: nn.Module, scales: dict) -> int:
    """Round each bias named in ``scales`` (parameter name -> int32 step, from
    :func:`flightco.onnx_passes.bias_scales`) to a multiple of its step, as the integer kernel
    will hold it; returns the number of biases changed."""
    import numpy as np

    params = dict(model.named_parameters())
    done = 0
    for name, step in scales.items():
        if name not in params:
            continue
        p = params[name]
        s = torch.from_numpy(np.asarray(step, np.float32)).reshape(-1)
        with torch.no_grad():
            p.copy_((torch.round(p.double() / s.double()) * s.double()).float())
        done += 1
    return done
