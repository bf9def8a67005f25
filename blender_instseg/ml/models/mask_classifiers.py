"""Second-look classifiers that name an instance from its (candidate) mask, for SOLOv2-lite.

Why: on rendered scenes the grid's category branch finds the objects (class-agnostic AP is far
above the class-aware AP) but names them poorly: it judges an object from the one grid cell at its
centre, at whatever scale the object happens to have. Both classifiers here look at the whole mask
instead; SOLOv2Lite keeps the grid branch's scores as the detection's objectness and lets one of
these pick the class (``SOLOv2Lite.reclassify``).

* ``MaskPooledClassifier``: features averaged under the mask. Cheap, but averaging throws away the
  layout, and layout (silhouette, outline) is what tells a cube from a cylinder.
* ``RoIMaskClassifier`` (the default): a square crop around each mask, resampled to a fixed size (so
  every object is seen at the same scale), of the image and the mask itself (optionally also mask
  features), read by a small CNN. Pure torch: ``layers/object_crops.py`` (``affine_grid`` +
  ``grid_sample``) stands in for torchvision's RoIAlign.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.object_crops import jitter_crops, sample_crops, square_crops
from .backbone import conv_gn

# flip TTA runs crops and mirror images as one batch while the first layer's output fits in this
_ONE_PASS_BYTES = 1 << 20


class MaskPooledClassifier(nn.Module):
    """Classifies an instance from features averaged under its (soft) mask."""

    def __init__(self, channels: tuple[int, ...], hidden: int, num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(sum(channels), hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def forward(self, feats: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        """feats: per map (E_i, h_i, w_i), the first at the weights' resolution, the others at integer
        divisions of it; weights: (K, h, w) soft masks in [0, 1] -> (K, C) class logits."""
        pooled = []
        for f in feats:
            factor = weights.shape[-1] // f.shape[-1]
            w = F.avg_pool2d(weights[:, None], factor)[:, 0] if factor > 1 else weights
            w = w.flatten(1)
            pooled.append((w @ f.flatten(1).T) / w.sum(1, keepdim=True).clamp(min=1e-6))
        return self.net(torch.cat(pooled, 1))


class RoIMaskClassifier(nn.Module):
    """Classifies an instance from a scale-normalised crop of image, mask and (optionally) mask features.

    Without feature channels (``reduced`` 0, the default) a crop depends on the image and the mask
    only, so crops cut by the data set from other training images (the crop bank) are valid inputs
    too (``classify``): the classifier learns from one sample per object, far fewer than the masks
    learn from, and the bank multiplies its samples per step at a small cost.
    """

    def __init__(self, feat_channels: int, hidden: int, num_classes: int, size: int = 24, width: int = 16,
                 reduced: int = 0, stages: int = 3) -> None:
        super().__init__()
        self.size, self.width = size, width
        # a 1x1 projection before cropping: the crop's backward pass writes a full-size gradient map per
        # crop, so its cost grows with the channels cropped
        self.reduce = nn.Conv2d(feat_channels, reduced, 1) if reduced else None
        # ``stages`` times: a stride-2 conv doubling the channels, then a conv (3: 24 -> 12 -> 6 -> 3 px).
        # Fewer stages never see a whole silhouette (with two, the last layer's cells see ~9 px) and
        # underfit their training crops; two-stage configs of older checkpoints still load (from_dict)
        layers, c = [conv_gn(3 + 1 + reduced, width)], width
        for _ in range(stages):
            layers += [conv_gn(c, 2 * c, stride=2), conv_gn(2 * c, 2 * c)]
            c *= 2
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def forward(self, image: torch.Tensor, feat: torch.Tensor, weights: torch.Tensor, views: int = 1,
                jitter: float = 0.0, generator: torch.Generator | None = None, flip_tta: bool = False,
                above: torch.Tensor | None = None) -> torch.Tensor:
        """image: (3, H, W) normalised input; feat: (E, h, w) mask features at the weights' resolution;
        weights: (K, h, w) soft masks in [0, 1] -> (K * views, C) class logits, view-major (all
        masks' first view, then all second views, ...). Training views > 1 jitter the crop
        (``layers.object_crops.jitter_crops``), standing in for the imperfect predicted masks of inference.
        ``flip_tta`` (inference): the mean log-probabilities of each crop and its mirror image, which
        are valid logits (it raises the classifier's held-out accuracy). ``above``: weights > 0.5 as
        0/1 floats, if the caller has it (``square_crops``).
        """
        if len(weights) == 0:
            return self.fc[-1].weight.new_zeros((0, self.fc[-1].out_features))
        return self.classify(self.crops(image, feat, weights, views, jitter, generator, above), flip_tta)

    def crops(self, image: torch.Tensor, feat: torch.Tensor, weights: torch.Tensor, views: int = 1,
              jitter: float = 0.0, generator: torch.Generator | None = None,
              above: torch.Tensor | None = None) -> torch.Tensor:
        """The (K * views, 4 [+ reduced], size, size) crops ``forward`` classifies, for callers that
        classify the crops of several images in one call (training: one batched CNN pass per step
        instead of one per image)."""
        theta = square_crops(weights.detach(), above=above)
        if views > 1:
            theta = jitter_crops(theta, views, jitter, generator)
            weights = weights.repeat(views, 1, 1)
        reduced = self.reduce(feat[None])[0] if self.reduce is not None else None
        return sample_crops(image, weights, theta, self.size, reduced)

    def classify(self, crops: torch.Tensor, flip_tta: bool = False) -> torch.Tensor:
        """(K, 4 [+ reduced], size, size) crops (normalised image, mask [, features]) -> (K, C) logits;
        with ``flip_tta`` the mean log-probabilities of each crop and its mirror image."""
        if not flip_tta:
            return self.fc(self.net(crops))
        # Crops and mirror images in one pass, or in two when the first layer's output for both would
        # outgrow a CPU's cache (then two passes are faster, by up to a fifth as measured; small batches
        # would pay each layer call's fixed cost twice instead). The same numbers either way: GroupNorm
        # is per crop.
        first_layer_bytes = 2 * len(crops) * self.width * self.size * self.size * crops.element_size()
        if first_layer_bytes <= _ONE_PASS_BYTES:
            log_pq = F.log_softmax(self.fc(self.net(torch.cat([crops, crops.flip(-1)]))), dim=1)
            log_p, log_q = log_pq[: len(crops)], log_pq[len(crops):]
        else:
            log_p = F.log_softmax(self.fc(self.net(crops)), dim=1)
            log_q = F.log_softmax(self.fc(self.net(crops.flip(-1))), dim=1)
        return 0.5 * (log_p + log_q)
