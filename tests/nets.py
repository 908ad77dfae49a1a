"""Tiny networks of the architectures users bring, for end-to-end tests.

Random, seeded weights (no downloads), 32 px inputs, 10 classes. Each factory
returns a :class:`neuronscope.Model`, so the CLI loads them as
``tests.nets:resnet`` (``package.module:factory``).

* :func:`resnet` - BatchNorm, in-place ReLU, max-pool, bottleneck blocks with
  projection shortcuts (torchvision's ResNet layout and names).
* :func:`vit` - patch embedding, class token, position embedding, multi-head
  self-attention blocks, LayerNorm, GELU; its blocks output (B, 1 + 8*8, C) tokens.
  ``TinyViT(attention="mha")`` uses ``nn.MultiheadAttention`` as torchvision's ViT does.
* :func:`convnext` - depthwise 7x7 convolutions, channels-last LayerNorm and
  pointwise ``Linear`` layers with GELU on permuted (B, H, W, C) tensors.
* :func:`dict_net` - returns ``{"logits": ..., "embedding": ...}``; a head
  module with dict outputs too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neuronscope import load_model

SIZE = 32
CLASSES = [f"thing{i}" for i in range(10)]


# ---------------------------------------------------------------- a 16 px, 4-class classifier

class TinyClassifier(nn.Module):
    """16 px images -> 4 classes; ``feat`` is an 8-channel post-ReLU map (the generator tests' classifier)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.feat = nn.ReLU()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():  # a sharper random classifier: logits that respond to the image
            self.conv.weight.mul_(5)
            self.fc.weight.mul_(5)

    def forward(self, x):
        return self.fc(self.pool(self.feat(self.conv(x))))


# ---------------------------------------------------------------- ResNet

class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(Bottleneck(16, 8), Bottleneck(32, 8))
        self.layer2 = nn.Sequential(Bottleneck(32, 16, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------- ViT

class Attention(nn.Module):
    """timm's layout: one qkv projection and ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MHAttention(nn.Module):
    """torchvision's layout: ``nn.MultiheadAttention`` (with its fused fast path in inference)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, attention: str = "sdpa"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = {"sdpa": Attention, "mha": MHAttention}[attention](dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * 2)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    def __init__(self, classes: int = 10, dim: int = 32, patch: int = 4, size: int = SIZE, depth: int = 2,
                 attention: str = "sdpa"):
        super().__init__()
        n = (size // patch) ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, 4, attention) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, C), row-major patches
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


# ---------------------------------------------------------------- ConvNeXt-style

class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of a channels-first map (ConvNeXt's stem and downsampling)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class TinyConvNeXt(nn.Module):
    def __init__(self, classes: int = 10, dims=(16, 32)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0]))
        self.stages = nn.Sequential(
            nn.Sequential(ConvNeXtBlock(dims[0])),
            nn.Sequential(LayerNorm2d(dims[0]), nn.Conv2d(dims[0], dims[1], 2, 2), ConvNeXtBlock(dims[1])),
        )
        self.norm = nn.LayerNorm(dims[1])
        self.head = nn.Linear(dims[1], classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.head(self.norm(x.mean((2, 3))))


# ---------------------------------------------------------------- dict outputs

class Heads(nn.Module):
    def __init__(self, cin: int, classes: int):
        super().__init__()
        self.fc = nn.Linear(cin, classes)
        self.embed = nn.Linear(cin, 8)

    def forward(self, x):
        return {"logits": self.fc(x), "embedding": self.embed(x)}


class DictNet(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.heads = Heads(32, classes)

    def forward(self, x):
        return self.heads(self.pool(self.features(x)).flatten(1))


# ---------------------------------------------------------------- factories

def _wrap(net: nn.Module, name: str, **kw):
    return load_model(net, preprocess="imagenet", input_size=SIZE, labels=CLASSES, name=name, device="cpu", **kw)


def resnet():
    torch.manual_seed(0)
    net = TinyResNet()
    # non-trivial BatchNorm statistics, as a trained network has
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return _wrap(net, "tiny_resnet")


def vit():
    torch.manual_seed(1)
    return _wrap(TinyViT(), "tiny_vit", fixed_size=True)  # position embeddings for 8x8 patches


def convnext():
    torch.manual_seed(2)
    return _wrap(TinyConvNeXt(), "tiny_convnext")


def dict_net():
    torch.manual_seed(3)
    return _wrap(DictNet(), "tiny_dict", output="logits")


FACTORIES = {"resnet": resnet, "vit": vit, "convnext": convnext, "dict_net": dict_net}
#: a mid-level layer of each, with its (C, H, W) as tapped
MID_LAYER = {"resnet": "layer1", "vit": "blocks.0", "convnext": "stages.0", "dict_net": "features.2"}
