"""Small pieces every world model's training loop shares: the optimiser schedule, batching, pixels."""
from __future__ import annotations

import math

import numpy as np
import torch
from transformers import CLIPImageProcessor

PIXEL_MEAN, PIXEL_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def image_processor(size: int) -> CLIPImageProcessor:
    """The processor saved with the world's models: images are already `size` px, so only rescale
    and normalise. `pixel_values` below is its fast tensor form (a test checks they agree)."""
    return CLIPImageProcessor(do_resize=False, do_center_crop=False, do_rescale=True, rescale_factor=1 / 255,
                              do_normalize=True, image_mean=list(PIXEL_MEAN), image_std=list(PIXEL_STD),
                              do_convert_rgb=True, size={"height": size, "width": size},
                              crop_size={"height": size, "width": size})


def pixel_values(images_NHWC: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.array(images_NHWC, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 255  # copy: inputs may be read-only views
    mean, std = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def adamw_with_schedule(params, lr: float, steps: int, warmup: int = 50, weight_decay: float = 0.01):
    """AdamW with linear warm-up and cosine decay to a tenth of `lr`."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def batches(n: int, batch_size: int, steps: int, rng: np.random.Generator):
    """`steps` index batches drawn by walking through shuffled epochs of range(n)."""
    order, pos = rng.permutation(n), 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = rng.permutation(n), 0
        yield order[pos:pos + batch_size]
        pos += batch_size
