"""Synthetic training / inference inputs shaped like the dataset mapper's output."""

from typing import Dict, List

import torch

from ..data.targets import semantic_instances


def synthetic_samples(
    *,
    batch: int,
    height: int,
    width: int,
    num_classes: int,
    ignore_value: int = 255,
    classes_per_image: int = 8,
    block: int = 32,
    seed: int = 0,
) -> List[Dict[str, object]]:
    """``batch`` mapper-shaped dicts: ``image`` uint8 [3, H, W], ``sem_seg`` int64 [H, W], the
    training ``instances`` of ``sem_seg`` (:func:`semantic_instances`) and ``height`` / ``width``.

    Each label map holds up to ``classes_per_image`` classes in ``block``-pixel squares (an ADE20K
    image has about eight), with 5% of the pixels set to ``ignore_value``, so the matcher and the
    mask losses see a realistic number of targets.
    """
    if min(batch, height, width, num_classes) < 1:
        raise ValueError(
            f"synthetic_samples: batch, height, width and num_classes must be >= 1, got "
            f"{batch}, {height}, {width}, {num_classes}"
        )
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(batch):
        image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen)
        present = torch.randperm(num_classes, generator=gen)[: min(classes_per_image, num_classes)]
        cells = (-(-height // block), -(-width // block))
        coarse = present[torch.randint(0, len(present), cells, generator=gen)]
        labels = coarse.repeat_interleave(block, 0).repeat_interleave(block, 1)
        labels = labels[:height, :width].contiguous()
        labels[torch.rand((height, width), generator=gen) < 0.05] = ignore_value
        samples.append(
            {
                "image": image,
                "sem_seg": labels,
                "instances": semantic_instances(labels, ignore_value),
                "height": height,
                "width": width,
            }
        )
    return samples
