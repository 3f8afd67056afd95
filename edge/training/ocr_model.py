"""The plate recognizer network: a compact conv-only CTC model (CRNN without the RNN).

Input: (N, 1, H, W) float32 grayscale in [0, 1] (H=48, W=144 by default).
Outputs: `logits` (N, T, C) per-column class scores (class 0 is the CTC blank; T = W / 4) and,
when the network has a state head, `state_logits` (N, S).

Why conv-only: a BiGRU adds little on fixed-layout plates and runs sequentially in onnxruntime,
which costs most at batch 1; depthwise-separable blocks keep the whole model near 6 M
multiply-adds per plate, so one CPU core reads a plate in well under a millisecond.
"""

from __future__ import annotations

import torch
from torch import nn

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # class i+1 is ALPHABET[i]; class 0 is the CTC blank
# Two-letter codes of the state head (lower case, as in the crops' labels.csv); DC included.
STATES = (
    "ak al ar az ca co ct dc de fl ga hi ia id il in ks ky la ma md me mi mn mo ms mt nc nd ne nh nj nm nv ny "
    "oh ok or pa ri sc sd tn tx ut va vt wa wi wv wy"
).split()
INPUT_HEIGHT = 48
INPUT_WIDTH = 144


def _conv_bn(cin: int, cout: int, k, s=1, p=0, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, p, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SepBlock(nn.Module):
    """Depthwise 3x3 + pointwise 1x1, with a residual when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride=1):
        super().__init__()
        self.dw = _conv_bn(cin, cin, 3, stride, 1, groups=cin)
        self.pw = _conv_bn(cin, cout, 1)
        self.residual = cin == cout and stride in (1, (1, 1))

    def forward(self, x):
        y = self.pw(self.dw(x))
        return x + y if self.residual else y


class PlateRecognizer(nn.Module):
    def __init__(self, n_classes: int = len(ALPHABET) + 1, n_states: int = 0, width: int = 1,
                 channels: "tuple[int, ...] | None" = None, input_width: int = INPUT_WIDTH):
        super().__init__()
        # The net is fully convolutional: any width that is a multiple of 4 works (T = width / 4
        # CTC columns), the height must give 3 rows after the four stride-2 stages.
        if input_width % 4 or input_width < 64:
            raise ValueError(f"input_width: a multiple of 4, at least 64; got {input_width}")
        self.input_hw = (INPUT_HEIGHT, int(input_width))
        c = list(channels) if channels else [16 * width, 48 * width, 64 * width, 96 * width, 128 * width]
        if len(c) != 5 or min(c) < 1:
            raise ValueError(f"channels: 5 positive widths expected, got {c}")
        self.channels = tuple(c)
        self.features = nn.Sequential(
            _conv_bn(1, c[0], 3, 2, 1),  # 24 x 72
            SepBlock(c[0], c[1], 2),  # 12 x 36
            SepBlock(c[1], c[2]),
            SepBlock(c[2], c[3], (2, 1)),  # 6 x 36
            SepBlock(c[3], c[3]),
            SepBlock(c[3], c[4], (2, 1)),  # 3 x 36
        )
        # Collapse the remaining rows into one feature column per horizontal step.
        self.collapse = _conv_bn(c[4], c[4], (3, 1))
        # Sequence context along the width (a plate's neighbours tell a stacked-letter column from
        # a main character), then per-column classes.
        self.context = nn.Sequential(
            nn.Conv1d(c[4], c[4], 5, 1, 2, groups=c[4], bias=False),
            nn.BatchNorm1d(c[4]),
            nn.Conv1d(c[4], c[4], 1, bias=False),
            nn.BatchNorm1d(c[4]),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Conv1d(c[4], n_classes, 1)
        self.n_states = n_states
        self.state_head = nn.Linear(c[4], n_states) if n_states else None

    def forward(self, x):
        f = self.features(x)
        f = self.collapse(f).squeeze(2)  # N, C, T
        f = f + self.context(f)
        logits = self.classifier(self.dropout(f)).permute(0, 2, 1)  # N, T, classes
        if self.state_head is None:
            return logits
        state_logits = self.state_head(f.mean(dim=2))
        return logits, state_logits


def _onnx_layers(path) -> tuple[list[tuple], tuple | None]:
    """Float weights of an exported recognizer, in graph order: [(conv weight, conv bias)], and the
    state head's (weight, bias). Reads float models (Conv, Gemm; BatchNorms folded by the exporter)
    and onnxruntime QOperator int8 models (QLinearConv, QGemm), dequantizing the latter exactly as
    the int8 kernels use them: w = (q - zero_point) * scale per output channel, bias = q * x_scale *
    w_scale."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    arr = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}

    def deq(q, scale, zp):
        q, scale, zp = arr[q].astype(np.float64), arr[scale].astype(np.float64), arr[zp].astype(np.float64)
        shape = (-1,) + (1,) * (q.ndim - 1)
        return ((q - zp.reshape(shape)) * scale.reshape(shape)).astype(np.float32)

    convs, head = [], None
    for n in m.graph.node:
        if n.op_type == "Conv":
            convs.append((arr[n.input[1]], arr[n.input[2]] if len(n.input) > 2 else None))
        elif n.op_type == "QLinearConv":
            w = deq(n.input[3], n.input[4], n.input[5])
            scale = (arr[n.input[1]].astype(np.float64) * arr[n.input[4]].astype(np.float64)).reshape(-1)
            b = (arr[n.input[8]].astype(np.float64) * scale).astype(np.float32) if len(n.input) > 8 else None
            convs.append((w, b))
        elif n.op_type in ("Gemm", "QGemm"):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            if n.op_type == "Gemm":
                w, b = arr[n.input[1]], arr[n.input[2]]
            else:  # A, a_scale, a_zp, B, b_scale, b_zp, C
                w = deq(n.input[3], n.input[4], n.input[5]) if attrs.get("transB", 0) else \
                    deq(n.input[3], n.input[4], n.input[5]).T.copy()
                scale = arr[n.input[1]].astype(np.float64) * arr[n.input[4]].astype(np.float64)
                b = (arr[n.input[6]].astype(np.float64) * scale).astype(np.float32)
            if n.op_type == "Gemm" and not attrs.get("transB", 0):
                w = w.T.copy()
            head = (w, b)
    return convs, head


def load_onnx_weights(model: "PlateRecognizer", path) -> None:
    """Initialise `model` from an exported recognizer (float or int8, see `_onnx_layers`): each conv
    gets the (folded) weights and its BatchNorm becomes the identity plus the folded bias. Exact in
    eval mode. Lets a shipped model be re-exported or re-quantized when its run's checkpoint is gone."""
    convs, head = _onnx_layers(path)
    mods = list(model.modules())
    pairs = []
    for i, mod in enumerate(mods):
        if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            pairs.append((mod, nxt if isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)) else None))
    if len(pairs) != len(convs):
        raise ValueError(f"{path}: {len(convs)} convolutions, the model has {len(pairs)}: not this architecture")
    with torch.no_grad():
        for (conv, bn), (w, b) in zip(pairs, convs):
            if w.ndim == 4 and conv.weight.ndim == 3 and w.shape[2] == 1:  # a head conv exported 2-D (onnx_layout)
                w = w[:, :, 0, :]
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise ValueError(f"{path}: a conv of shape {tuple(w.shape)} where the model has "
                                 f"{tuple(conv.weight.shape)}: not this architecture")
            conv.weight.copy_(torch.tensor(w))
            bias = torch.tensor(b) if b is not None else torch.zeros(conv.out_channels)
            if bn is not None:
                bn.weight.fill_(1.0)
                bn.bias.copy_(bias)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
            else:
                conv.bias.copy_(bias)
        if (head is None) != (model.state_head is None):
            raise ValueError(f"{path}: state head {'missing' if head is None else 'present'}, model differs")
        if head is not None:
            if tuple(head[0].shape) != tuple(model.state_head.weight.shape):
                raise ValueError(f"{path}: state head of shape {tuple(head[0].shape)}: not this architecture")
            model.state_head.weight.copy_(torch.tensor(head[0]))  # a copy: the ONNX arrays are read-only
            model.state_head.bias.copy_(torch.tensor(head[1]))


def prune_recognizer(big: PlateRecognizer, channels: "tuple[int, ...]") -> PlateRecognizer:
    """A narrower recognizer (`channels`, 5 widths) holding the `big` one's most important channels:
    per channel group (the channels one layer writes and the next reads, residual paths counted as
    one group), those whose producing filters have the largest L1 norm. The start of a
    prune-then-distill run: it keeps much of what the big model learnt, which a small model trained
    from scratch would have to learn again."""
    small = PlateRecognizer(n_classes=big.classifier.out_channels,
                            n_states=big.state_head.out_features if big.state_head is not None else 0,
                            channels=channels, input_width=big.input_hw[1])
    f, g = big.features, small.features

    def l1(conv) -> torch.Tensor:
        return conv.weight.detach().abs().flatten(1).sum(1)

    def top(score: torch.Tensor, k: int) -> torch.Tensor:
        return torch.sort(torch.topk(score, k).indices).values

    # producing convs of each group: stem; block1.pw; block2.pw; block3.pw + block4.pw (residual);
    # block5.pw; collapse + context pw (residual)
    groups = [
        top(l1(f[0][0]), channels[0]),
        top(l1(f[1].pw[0]), channels[1]),
        top(l1(f[2].pw[0]), channels[2]),
        top(l1(f[3].pw[0]) + l1(f[4].pw[0]), channels[3]),
        top(l1(f[5].pw[0]), channels[4]),
        top(l1(big.collapse[0]) + l1(big.context[2]), channels[4]),
    ]

    def copy_conv_bn(dst, src, out_idx, in_idx=None):
        w = src[0].weight.detach()[out_idx]
        if in_idx is not None:
            w = w[:, in_idx]
        dst[0].weight.copy_(w)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst[1], name).copy_(getattr(src[1], name).detach()[out_idx])

    with torch.no_grad():
        copy_conv_bn(g[0], f[0], groups[0])
        block_io = [(groups[0], groups[1]), (groups[1], groups[2]), (groups[2], groups[3]), (groups[3], groups[3]),
                    (groups[3], groups[4])]
        for b, (cin, cout) in enumerate(block_io, start=1):
            copy_conv_bn(g[b].dw, f[b].dw, cin)  # depthwise: one filter per input channel
            copy_conv_bn(g[b].pw, f[b].pw, cout, cin)
        copy_conv_bn(small.collapse, big.collapse, groups[5], groups[4])
        c5 = groups[5]
        small.context[0].weight.copy_(big.context[0].weight.detach()[c5])
        small.context[2].weight.copy_(big.context[2].weight.detach()[c5][:, c5])
        for i in (1, 3):
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(small.context[i], name).copy_(getattr(big.context[i], name).detach()[c5])
        small.classifier.weight.copy_(big.classifier.weight.detach()[:, c5])
        small.classifier.bias.copy_(big.classifier.bias.detach())
        if big.state_head is not None:
            small.state_head.weight.copy_(big.state_head.weight.detach()[:, c5])
            small.state_head.bias.copy_(big.state_head.bias.detach())
    return small
