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
    def __init__(self, n_classes: int = len(ALPHABET) + 1, n_states: int = 0, width: int = 1):
        super().__init__()
        c = [16 * width, 48 * width, 64 * width, 96 * width, 128 * width]
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
