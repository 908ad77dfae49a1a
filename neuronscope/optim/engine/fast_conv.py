"""A convolution whose backward computes only the input gradient, with plain forward convolutions.

Activation maximization needs ∂objective/∂image through a frozen network: the
weights never need a gradient. PyTorch's CPU backward for a convolution
(oneDNN's backward-data primitive) is many times slower than a forward
convolution of the same size for the layers vision nets are full of: strided
depthwise convolutions and 1×1 expansions.

The input gradient of a convolution is itself a convolution of the output
gradient with the flipped, channel-transposed kernel. For stride s it splits
into s×s phases (polyphase form): input pixels ``(s·m + cy, s·n + cx)`` only
receive the kernel taps congruent to their phase, so each phase is a small
stride-1 convolution of the output gradient, written into every s-th pixel.
No zero-stuffed upsampling, no backward primitive: faster on those layers,
identical to the autograd gradient up to float rounding (tests/optim/engine/test_fast_conv.py).

A ReLU or ReLU6 that reads only the convolution's output can be fused into it
(``fused_activation``): on CPU the forward is one oneDNN convolution with the
clamp as a post-op, so the pre-activation tensor is never written, and the
backward masks the incoming gradient with the *output* (which is at 0 or 6
exactly where the input was outside the open range). The clamp's forward pass
and its saved input (the largest tensors of an inverted-residual network) are gone.

:class:`FastConv2d` is used by :mod:`neuronscope.optim.engine.fast_copy` in the render-time
copy of a model, only for convolutions whose weights are frozen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...models.efficientnet_lite import same_pads
from ...gradient_overrides import ACTIVATIONS, activation_grad


def _transposed(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """(Cout, Cin/g, kh, kw) -> (Cin, Cout/g, kh, kw): the kernel of the input-gradient convolution."""
    cout, cin_g, kh, kw = weight.shape
    g = groups
    return weight.reshape(g, cout // g, cin_g, kh, kw).transpose(1, 2).reshape(cin_g * g, cout // g, kh, kw)


def _phase_taps(kernel: int, stride: int, pad: int, phase: int) -> tuple[list[int], int]:
    """Kernel taps feeding input positions ``stride*m + phase``, reversed, and the offset of the first one.

    Along one axis ``gx[s·m + c] = Σ_j v[j] · g[m + start + j]`` where ``v`` are the
    returned taps of the forward kernel (in reversed order).
    """
    k0 = (phase + pad) % stride
    taps = list(range(k0, kernel, stride))
    if not taps:
        return [], 0
    d0 = (phase + pad - k0) // stride
    return taps[::-1], d0 - len(taps) + 1


def _layout(x: torch.Tensor) -> torch.memory_format:
    """channels_last for a channels-last 4-D tensor (that is not also plain contiguous), else contiguous."""
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def _zero_pad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """``F.pad(x, (l, r, t, b))`` for non-negative pads, in x's memory layout, zeroing only the border.

    F.pad fills the whole output before copying x in; on the first block's
    activations that fill is a large share of the forward's time there.
    """
    t, b, l, r = pads
    n, c, h, w = x.shape
    out = torch.empty((n, c, h + t + b, w + l + r), dtype=x.dtype, device=x.device, memory_format=_layout(x))
    out[:, :, t:t + h, l:l + w] = x
    for rows in (slice(0, t), slice(t + h, t + h + b)):
        if rows.stop > rows.start:
            out[:, :, rows].zero_()
    for cols in (slice(0, l), slice(l + w, l + w + r)):
        if cols.stop > cols.start:
            out[:, :, t:t + h, cols].zero_()
    return out


def _find_pointwise():
    try:
        return torch.ops.mkldnn._convolution_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


#: oneDNN's convolution with a fused element-wise post-op (what torch.compile uses on CPU); None where absent
_ONEDNN_CONV_POINTWISE = _find_pointwise()


def _onednn_fusable(x: torch.Tensor) -> bool:
    return (_ONEDNN_CONV_POINTWISE is not None and x.device.type == "cpu" and x.dim() == 4
            and x.dtype in (torch.float32, torch.bfloat16))


class _InputGradConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer = layer
        ctx.shape = x.shape
        ctx.pads = layer.pads_for(x.shape[-2], x.shape[-1])
        ctx.layout = _layout(x)
        ctx.rule = layer.grad_rule
        y = layer.conv(x, ctx.pads)
        if layer.fused_activation is not None:
            ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        layer = ctx.layer
        if layer.fused_activation is not None:
            (y,) = ctx.saved_tensors
            g = activation_grad(g, y, ACTIVATIONS[layer.fused_activation], ctx.rule)
        return layer.input_grad(g, ctx.shape, ctx.pads, ctx.layout), None


class FastConv2d(nn.Module):
    """A frozen 2-D convolution (optionally TF 'SAME'-padded) with the fast input-gradient backward.

    ``padding``: an int pair for fixed zero padding, or ``"tf_same"`` for
    TensorFlow's size-dependent padding (asymmetric for stride 2 on even sizes).
    The weight gets no gradient; use it only where the weights are frozen.
    ``fused_activation``: ``None``, ``"relu"`` or ``"relu6"`` applied to the output
    (``grad_rule``: a rule of :mod:`neuronscope.gradient_overrides`, e.g. ``"redirect"``, for its backward).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride: int | tuple[int, int],
                 padding: tuple[int, int] | str, groups: int, fused_activation: str | None = None):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
        self.padding = padding
        self.groups = groups
        if fused_activation not in (None, *ACTIVATIONS):
            raise ValueError(f"fused_activation must be None or one of {sorted(ACTIVATIONS)}, got {fused_activation!r}")
        self.fused_activation = fused_activation
        self.grad_rule: str | None = None  # a rule of neuronscope.gradient_overrides for the fused activation
        self.onednn_fusion = True  # use oneDNN's conv+post-op kernel where it applies (turned off if it fails)
        self.grad_method = "auto"  # input gradient: "polyphase", "transposed", or "auto" (by stride, see _auto_method)
        self._kernels: dict = {}

    def extra_repr(self) -> str:
        act = f", activation={self.fused_activation}" if self.fused_activation else ""
        return (f"{self.weight.shape[1] * self.groups}, {self.weight.shape[0]}, kernel={tuple(self.weight.shape[2:])}, "
                f"stride={self.stride}, padding={self.padding!r}, groups={self.groups}{act}")

    # geometry -------------------------------------------------------------------------------
    def pads_for(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) zero padding for an h x w input."""
        kh, kw = self.weight.shape[-2:]
        if self.padding == "tf_same":
            return (*same_pads(h, kh, self.stride[0]), *same_pads(w, kw, self.stride[1]))
        ph, pw = self.padding
        return ph, ph, pw, pw

    def conv(self, x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
        """The convolution (and its fused activation) of ``x`` zero-padded by ``pads``."""
        t, b, l, r = pads
        if t != b or l != r:
            x, t, l = _zero_pad(x, pads), 0, 0
        act = self.fused_activation
        if act is not None and self.onednn_fusion and _onednn_fusable(x):
            try:
                return _ONEDNN_CONV_POINTWISE(x, self.weight, self.bias, [t, l], list(self.stride), [1, 1], self.groups,
                                              "hardtanh" if act == "relu6" else "relu",
                                              [0.0, 6.0] if act == "relu6" else [], "")
            except RuntimeError:  # a oneDNN build or layout that lacks the fused kernel: do it in two steps
                self.onednn_fusion = False
        y = F.conv2d(x, self.weight, self.bias, self.stride, (t, l), 1, self.groups)
        if act is None:
            return y
        upper = ACTIVATIONS[act]
        return y.clamp_(0, upper) if upper is not None else y.relu_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad and not self.weight.requires_grad:
            return _InputGradConv.apply(x, self)
        return self.conv(x, self.pads_for(x.shape[-2], x.shape[-1]))

    # backward -------------------------------------------------------------------------------
    def _phase_kernels(self, pad_top: int, pad_left: int, like: torch.Tensor):
        """Per phase (cy, cx): the sub-kernel and the start offsets; cached per padding and device."""
        key = (pad_top, pad_left, like.device, like.dtype, self.weight._version)
        cached = self._kernels.get(key)
        if cached is not None:
            return cached
        wt = _transposed(self.weight.detach(), self.groups).to(like)
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        phases = []
        for cy in range(sh):
            ty, sy = _phase_taps(kh, sh, pad_top, cy)
            for cx in range(sw):
                tx, sx = _phase_taps(kw, sw, pad_left, cx)
                if not ty or not tx:
                    phases.append((cy, cx, None, 0, 0))
                    continue
                k = wt[:, :, ty][:, :, :, tx]
                k = k.contiguous(memory_format=torch.channels_last) if like.dim() == 4 else k.contiguous()
                phases.append((cy, cx, k, sy, sx))
        if len(self._kernels) > 8:
            self._kernels.clear()
        self._kernels[key] = phases
        return phases

    def input_grad(self, g: torch.Tensor, shape, pads, fmt: torch.memory_format) -> torch.Tensor:
        """The gradient for an input of ``shape`` padded by ``pads``, in memory format ``fmt``."""
        g = g.contiguous(memory_format=fmt)
        method = self.grad_method
        if method == "auto":
            method = self._auto_method(g.dtype)
        if method == "transposed":
            return self._transposed_grad(g, shape, pads, fmt)
        return self._polyphase_grad(g, shape, pads, fmt)

    def _auto_method(self, dtype: torch.dtype = torch.float32) -> str:
        """In float32 the transposed convolution for strided kernels up to 3x3, else the polyphase form.

        Measured on Lite0's layers (2 threads, channels-last; docs/render-speed.md gives
        the figures): oneDNN's transposed convolution beats the polyphase form (s*s small
        convolutions plus a strided scatter) on the strided 3x3 layers, loses on the
        stride-2 5x5 depthwise at 59 px and ties at 15 px; at stride 1 polyphase is one
        convolution like the forward and wins or ties. A fixed rule rather than timing
        each layer keeps renders reproducible: the method changes the float rounding,
        and an optimization amplifies any rounding difference. In bfloat16 oneDNN's
        transposed convolution is slower than polyphase everywhere, so bf16 always uses
        polyphase.
        """
        strided = max(self.stride) > 1
        small = max(self.weight.shape[-2:]) <= 3
        return "transposed" if dtype == torch.float32 and strided and small else "polyphase"

    def _transposed_grad(self, g: torch.Tensor, shape, pads, fmt) -> torch.Tensor:
        """The input gradient as one transposed convolution (oneDNN's deconvolution on CPU), cropped to the input."""
        _, _, h, w = shape
        top, _, left, _ = pads
        y = F.conv_transpose2d(g, self.weight, None, self.stride, 0, 0, self.groups)
        # y is the gradient of the padded input from its top-left corner; rows (cols) of the
        # padded input that no window reached are missing from its end and get zero gradient
        short_h, short_w = max(top + h - y.shape[-2], 0), max(left + w - y.shape[-1], 0)
        if short_h or short_w:
            y = F.pad(y, (0, short_w, 0, short_h))
        # a full-size slice is a view with y's strides: contiguous() then copies nothing
        return y[:, :, top:top + h, left:left + w].contiguous(memory_format=fmt)

    def _polyphase_grad(self, g: torch.Tensor, shape, pads, fmt) -> torch.Tensor:
        """The input gradient as stride-1 convolutions, one per stride phase."""
        n, cin, h, w = shape
        sh, sw = self.stride
        phases = self._phase_kernels(pads[0], pads[2], g)
        if sh == sw == 1:  # one phase: the whole gradient is one convolution
            _, _, k, sy, sx = phases[0]
            return self._phase_grad(g, k, sy, sx, h, w)
        out = torch.empty((n, cin, h, w), dtype=g.dtype, device=g.device, memory_format=fmt)
        for cy, cx, k, sy, sx in phases:
            mh, mw = -(-(h - cy) // sh), -(-(w - cx) // sw)  # input rows/cols of this phase
            if mh <= 0 or mw <= 0:
                continue
            out[:, :, cy::sh, cx::sw] = 0 if k is None else self._phase_grad(g, k, sy, sx, mh, mw)
        return out

    def _phase_grad(self, g: torch.Tensor, k: torch.Tensor, sy: int, sx: int, mh: int, mw: int) -> torch.Tensor:
        """Stride-1 convolution of ``g`` shifted by (sy, sx), sized (mh, mw): one phase of the input gradient."""
        th, tw = k.shape[-2:]
        ho, wo = g.shape[-2:]
        top, left = -sy, -sx
        bottom, right = mh + th - 1 - ho - top, mw + tw - 1 - wo - left
        if top == bottom >= 0 and left == right >= 0:
            return F.conv2d(g, k, None, 1, (top, left), 1, self.groups)
        return F.conv2d(F.pad(g, (left, right, top, bottom)), k, None, 1, 0, 1, self.groups)
