"""Two small image classifiers for scikit-learn's 8x8 digits (pocketsize.data.digits): a CNN
teacher and an MLP student, for the array-classification task. Each keeps its constructor
arguments in `self.config`, so pocketsize's module directory can rebuild it."""

from __future__ import annotations

import torch
from torch import nn

from pocketsize.formats.module_dir import register_module


@register_module("digits-cnn")
class DigitsCNN(nn.Module):
    """Two 3x3 convolutions, a max-pool and two linear layers: the teacher."""

    def __init__(self, channels: int = 16, hidden: int = 64, num_labels: int = 10):
        super().__init__()
        self.config = dict(channels=channels, hidden=hidden, num_labels=num_labels)
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * channels * 4 * 4, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_labels),
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixel_values))


@register_module("digits-mlp")
class DigitsMLP(nn.Module):
    """One hidden layer over the 64 pixels: the student."""

    def __init__(self, hidden: int = 32, num_labels: int = 10, in_features: int = 64):
        super().__init__()
        self.config = dict(hidden=hidden, num_labels=num_labels, in_features=in_features)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_labels),
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)
