"""Per-RoI masks <-> image masks in pure torch: GT crops for a mask head, and pasting predictions back.

Both use the box convention of ``boxes.py`` (continuous pixel coordinates, pixel ``i`` covers
``[i, i + 1)``), so a mask cropped from a box and pasted back into the same box lands where it came from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .roi_align import roi_align


def crop_masks_to_rois(masks: torch.Tensor, boxes: torch.Tensor, mask_index: torch.Tensor, size: int,
                       sampling_ratio: int = 2) -> torch.Tensor:
    """Mask-head targets: ``masks[mask_index[k]]`` (G, H, W) cropped to ``boxes[k]`` and resized to size x size.

    RoIAlign of the binary mask (aligned, ``sampling_ratio`` samples per bin per axis) thresholded at
    0.5, as detectron2's ``BitMasks.crop_and_resize``. Returns (K, size, size) float 0/1.
    """
    if boxes.shape[0] == 0:
        return masks.new_zeros((0, size, size), dtype=torch.float32)
    rois = torch.cat([mask_index[:, None].to(boxes.dtype), boxes], 1)
    out = roi_align(masks[:, None].float(), rois.float(), size, 1.0, sampling_ratio, aligned=True)
    return (out[:, 0] >= 0.5).float()


def paste_masks_in_image(masks: torch.Tensor, boxes: torch.Tensor, image_hw: tuple[int, int],
                         threshold: float | None = 0.5, max_chunk_pixels: int = 1 << 22) -> torch.Tensor:
    """Paste (K, M, M) per-box mask probabilities into (K, H, W) image masks (detectron2 ``paste_masks_in_image``).

    Each image pixel centre inside box k samples ``masks[k]`` bilinearly (``grid_sample``,
    ``align_corners=False``: the M x M cells span the box exactly); pixels outside the box get 0.
    With ``threshold`` the result is bool (>= threshold), else the sampled values. Masks are done
    in chunks of at most ``max_chunk_pixels`` output pixels, so 100 masks on a large image never
    need a 100 x H x W x 2 sampling grid at once.
    """
    h, w = image_hw
    k = masks.shape[0]
    dtype = torch.bool if threshold is not None else masks.dtype
    out = torch.empty((k, h, w), dtype=dtype, device=masks.device)
    if k == 0:
        return out
    xs = torch.arange(w, device=masks.device, dtype=torch.float32) + 0.5
    ys = torch.arange(h, device=masks.device, dtype=torch.float32) + 0.5
    boxes = boxes.float()
    chunk = max(1, max_chunk_pixels // max(1, h * w))
    for start in range(0, k, chunk):
        b = boxes[start:start + chunk]
        bw = (b[:, 2] - b[:, 0]).clamp(min=1e-6)
        bh = (b[:, 3] - b[:, 1]).clamp(min=1e-6)
        gx = (xs[None] - b[:, 0:1]) / bw[:, None] * 2 - 1  # (k, W)
        gy = (ys[None] - b[:, 1:2]) / bh[:, None] * 2 - 1  # (k, H)
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), -1)  # (k, H, W, 2)
        pasted = F.grid_sample(masks[start:start + chunk, None].float(), grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False)[:, 0]
        out[start:start + chunk] = pasted >= threshold if threshold is not None else pasted.to(dtype)
    return out
