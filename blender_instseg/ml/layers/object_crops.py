"""Scale-normalised square crops around object masks, in pure torch (``affine_grid`` + ``grid_sample``).

Used twice with the same geometry, so the two agree pixel for pixel: by SOLOv2-lite's RoI mask
classifier on candidate masks (``models/mask_classifiers.py``), and by the training data set's crop
bank, which feeds that classifier objects from other images (``data.InstanceDataset``).

Crops are described by ``affine_grid`` matrices in normalised coordinates, so one matrix crops any
map that covers the same image (the stride-1 input and stride-4 masks alike). Images are sampled
with border padding, which commutes with per-pixel normalisation: cropping then normalising equals
normalising then cropping.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MASK_STRIDE = 4  # the classifier's masks are soft stride-4 maps (SOLOv2's mask-feature resolution)


def square_crops(weights: torch.Tensor, margin: float = 0.2, thr: float = 0.5,
                 above: torch.Tensor | None = None) -> torch.Tensor:
    """(K, h, w) soft masks -> (K, 2, 3) ``affine_grid`` matrices of a square crop around each mask.

    The square is centred on the box of the pixels > ``thr`` (a mask with none: its pixels above half
    its own maximum; an all-zero mask: the whole map), its side the box's longer side times
    1 + ``margin``, at least 2 pixels, so the object keeps its aspect ratio and a little context.
    ``above``: ``weights > thr`` as 0/1 floats, when the caller already has it and every mask has
    such a pixel (SOLOv2's candidates), which saves five passes over the maps.
    """
    k, h, w = weights.shape
    if above is not None:
        on = above
    else:
        peak = weights.flatten(1).amax(1).clamp(min=1e-6)
        on = ((weights > thr) | ((weights >= 0.5 * peak[:, None, None]) & (peak < thr)[:, None, None])).float()
    rows, cols = on.amax(2) > 0, on.amax(1) > 0  # (a float max is many times faster than a bool any on a CPU)
    iy = torch.arange(h, device=weights.device, dtype=weights.dtype)
    ix = torch.arange(w, device=weights.device, dtype=weights.dtype)
    big = torch.tensor(1e9, device=weights.device, dtype=weights.dtype)
    y0 = torch.where(rows, iy, big).amin(1)
    y1 = torch.where(rows, iy, -big).amax(1) + 1
    x0 = torch.where(cols, ix, big).amin(1)
    x1 = torch.where(cols, ix, -big).amax(1) + 1
    empty = ~rows.any(1)
    y0, x0 = torch.where(empty, 0.0, y0), torch.where(empty, 0.0, x0)
    y1, x1 = torch.where(empty, float(h), y1), torch.where(empty, float(w), x1)
    half = (torch.maximum(y1 - y0, x1 - x0) * (1 + margin) / 2).clamp(min=1.0)
    theta = torch.zeros(k, 2, 3, device=weights.device, dtype=weights.dtype)
    theta[:, 0, 0] = 2 * half / w
    theta[:, 0, 2] = (x0 + x1) / w - 1
    theta[:, 1, 1] = 2 * half / h
    theta[:, 1, 2] = (y0 + y1) / h - 1
    return theta


def jitter_crops(theta: torch.Tensor, views: int, jitter: float, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
    """(K, 2, 3) -> (K * views, 2, 3), view-major: the plain crops, then ``views - 1`` copies whose
    centres move by up to ``jitter`` of the half side and whose sides scale by 1 +- ``jitter``."""
    theta = theta.repeat(views, 1, 1)
    k = len(theta)
    u = torch.rand(k, 3, generator=generator, device=theta.device, dtype=theta.dtype) * 2 - 1
    u[: k // views] = 0
    half = theta[:, :, :2].diagonal(dim1=1, dim2=2).clone()  # (K, 2) normalised half sides
    theta[:, :, 2] = theta[:, :, 2] + jitter * u[:, :2] * half
    scale = 1 + jitter * u[:, 2]
    theta[:, 0, 0] = theta[:, 0, 0] * scale
    theta[:, 1, 1] = theta[:, 1, 1] * scale
    return theta


def sample_crops(image: torch.Tensor, masks: torch.Tensor, theta: torch.Tensor, size: int,
                 feat: torch.Tensor | None = None) -> torch.Tensor:
    """Crops (K, 3 + 1 [+ E], size, size): image (3, H, W) with border padding, masks (K, h, w) with
    zeros outside, optional feature map (E, h', w') with zeros outside, all under the K matrices."""
    k = len(theta)
    grid = F.affine_grid(theta, [k, 1, size, size], align_corners=False)
    maps = [F.grid_sample(image[None].expand(k, -1, -1, -1), grid, padding_mode="border", align_corners=False),
            F.grid_sample(masks[:, None], grid, align_corners=False)]
    if feat is not None:
        maps.append(F.grid_sample(feat[None].expand(k, -1, -1, -1), grid, align_corners=False))
    return torch.cat(maps, 1)


def object_crops(image: torch.Tensor, masks: torch.Tensor, size: int) -> torch.Tensor:
    """Full-resolution binary masks (K, H, W) of objects in ``image`` (3, H, W) -> (K, 4, size, size)
    crops of image + soft stride-4 mask, as the classifier sees a predicted mask of the object."""
    h, w = masks.shape[-2:]
    pad = (0, -w % MASK_STRIDE, 0, -h % MASK_STRIDE)  # both maps must cover the same area
    image = F.pad(image[None], pad, mode="replicate")[0] if any(pad) else image
    soft = F.avg_pool2d(F.pad(masks.float(), pad)[None], MASK_STRIDE)[0]
    return sample_crops(image, soft, square_crops(soft), size)


def shuffle_channels(rgb: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(K, 3, S, S) -> the same crops, each with its colour channels in a random order.

    Why: the generator's materials are random, so an object's colour says nothing about its class;
    shuffling the channels of the crop bank's crops (one exact crop per object, seen dozens of times
    in a run) keeps the classifier from learning the colours of training objects. It raises the
    classifier's held-out accuracy (``benchmarks/bench_classifier.py`` measures the classifier alone).
    """
    if len(rgb) == 0:
        return rgb
    order = torch.argsort(torch.rand(len(rgb), 3, generator=generator, device=rgb.device), dim=1)
    return torch.gather(rgb, 1, order[:, :, None, None].expand_as(rgb))
