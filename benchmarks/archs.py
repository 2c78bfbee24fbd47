"""Small torch definitions of well-known architectures, exported as float ONNX for the block-model
benchmark (torchvision cannot be installed beside torch 2.13.0 here, see NOTES.md).

They follow the published designs at CIFAR-like sizes: MobileNetV2 (Sandler et al. 2018, width
multipliers 0.35/0.5, torchvision's layer table), the CIFAR ResNets of He et al. 2016 (ResNet-8/14),
an ImageNet-style ResNet-18 stem (7x7/2 conv + 3x3/2 max-pool) at quarter width, and VGG-11 (with
BN) at quarter width. Weights are random: only shapes matter for cost.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn


def _div8(v: float) -> int:
    return max(8, int(v + 4) // 8 * 8)


def _cbr(cin: int, cout: int, k: int, s: int, groups: int = 1, act: type[nn.Module] | None = nn.ReLU6) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class _InvRes(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = cin * t
        layers = [_cbr(cin, hidden, 1, 1)] if t != 1 else []
        layers += [_cbr(hidden, hidden, 3, stride, groups=hidden), _cbr(hidden, cout, 1, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.skip else self.body(x)


def mobilenet_v2(width: float, num_classes: int = 10, stem_stride: int = 1) -> nn.Module:
    """torchvision's MobileNetV2 layer table; stride-1 stem and second stage for 32x32 inputs."""
    table = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    c = _div8(32 * width)
    layers: list[nn.Module] = [_cbr(3, c, 3, stem_stride)]
    for t, ch, n, s in table:
        out = _div8(ch * width)
        for i in range(n):
            layers.append(_InvRes(c, out, s if i == 0 else 1, t))
            c = out
    layers += [_cbr(c, 1280, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, num_classes)]
    return nn.Sequential(*layers)


class _Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.a = _cbr(cin, cout, 3, stride, act=nn.ReLU)
        self.b = _cbr(cout, cout, 3, 1, act=None)
        self.down = _cbr(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.b(self.a(x)) + self.down(x))


def resnet_cifar(blocks_per_stage: int, num_classes: int = 10) -> nn.Module:
    """He et al.'s CIFAR ResNet-(6n+2): 16/32/64 channels, n basic blocks per stage."""
    layers: list[nn.Module] = [_cbr(3, 16, 3, 1, act=nn.ReLU)]
    c = 16
    for i, ch in enumerate((16, 32, 64)):
        for j in range(blocks_per_stage):
            layers.append(_Basic(c, ch, 2 if i > 0 and j == 0 else 1))
            c = ch
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


def resnet18(width: float, num_classes: int = 10) -> nn.Module:
    """ResNet-18 with the ImageNet stem (7x7/2 conv, 3x3/2 max-pool), channels x ``width``."""
    w = [int(64 * width * m) for m in (1, 2, 4, 8)]
    layers: list[nn.Module] = [_cbr(3, w[0], 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)]
    c = w[0]
    for i, ch in enumerate(w):
        for j in range(2):
            layers.append(_Basic(c, ch, 2 if i > 0 and j == 0 else 1))
            c = ch
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


def vgg11(width: float, num_classes: int = 10) -> nn.Module:
    """VGG-11 with BN (configuration A), channels x ``width``, one linear classifier."""
    cfg = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
    layers: list[nn.Module] = []
    c = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            out = int(v * width)
            layers.append(_cbr(c, out, 3, 1, act=nn.ReLU))
            c = out
    layers += [nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


ARCHS = {
    "mobilenetv2-0.35-r32": (lambda: mobilenet_v2(0.35), 32),
    "mobilenetv2-0.5-r32": (lambda: mobilenet_v2(0.5), 32),
    "resnet8-r32": (lambda: resnet_cifar(1), 32),
    "resnet14-r32": (lambda: resnet_cifar(2), 32),
    "resnet18-0.25-r64": (lambda: resnet18(0.25), 64),
    "vgg11-0.25-r32": (lambda: vgg11(0.25), 32),
}


def export_arch(name: str, path: Path) -> None:
    """Export architecture ``name`` (random weights, eval mode) as float ONNX, batch 1, opset 13."""
    build, res = ARCHS[name]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(1, 3, res, res)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=13, input_names=["input"],
                          output_names=["logits"])
