"""Shared input handling and post-processing of the SeMask meta-architectures.

Mask-classification outputs (per-query class logits and mask logits) become semantic, panoptic or
instance predictions as Mask2Former defines them (SeMask's prior outputs:
:mod:`semask.modeling.semantic_prior.outputs`).
"""

from typing import Container, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.structures import BitMasks, ImageList, Instances

from ..onednn_linear import ONEDNN, matmul


def normalize_and_pad(
    batched_inputs: Sequence[Dict],
    pixel_mean: torch.Tensor,
    pixel_std: torch.Tensor,
    size_divisibility: int,
) -> ImageList:
    """Normalise each ``"image"`` (uint8 [3, H, W]); zero-pad all to one size divisible by
    ``size_divisibility``.

    ``pixel_mean``/``pixel_std`` are [3, 1, 1]; padding happens after normalisation.
    """
    device = pixel_mean.device
    images = [(x["image"].to(device).float() - pixel_mean) / pixel_std for x in batched_inputs]
    image_sizes = [(image.shape[-2], image.shape[-1]) for image in images]
    # Python (or, while exporting, symbolic) integers: detectron2's ImageList.from_tensors takes
    # the maximum size as a tensor, a data-dependent value that torch.export cannot trace.
    stride = max(size_divisibility, 1)
    padded_h = -(-max(h for h, _ in image_sizes) // stride) * stride
    padded_w = -(-max(w for _, w in image_sizes) // stride) * stride
    padded = [
        F.pad(im, [0, padded_w - w, 0, padded_h - h]) for im, (h, w) in zip(images, image_sizes)
    ]
    return ImageList(torch.stack(padded), image_sizes)


def pad_sem_seg(
    batched_inputs: Sequence[Dict], images: ImageList, ignore_value: int
) -> torch.Tensor:
    """Stack the inputs' ``"sem_seg"`` ([H, W] int64) padded with ``ignore_value`` to ``images``.

    Returns [B, Hp, Wp] int64 where [Hp, Wp] is the padded image size.
    """
    if any("sem_seg" not in x for x in batched_inputs):
        raise KeyError("training needs a 'sem_seg' label map ([H, W] int64) in every input dict")
    padded_h, padded_w = images.tensor.shape[-2:]
    out = torch.full(
        (len(batched_inputs), padded_h, padded_w),
        ignore_value,
        dtype=torch.int64,
        device=images.tensor.device,
    )
    for i, (x, (h, w)) in enumerate(zip(batched_inputs, images.image_sizes)):
        sem_seg = x["sem_seg"]
        if tuple(sem_seg.shape) != (h, w):
            raise ValueError(f"input {i}: sem_seg shape {tuple(sem_seg.shape)} != image {(h, w)}")
        out[i, :h, :w] = sem_seg.to(out.device)
    return out


def output_size(input_per_image: Mapping, image_size: Tuple[int, int]) -> Tuple[int, int]:
    """The requested output size: the input's ``height``/``width``, else the image's own size."""
    return input_per_image.get("height", image_size[0]), input_per_image.get("width", image_size[1])


def semantic_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    band_rows: int = 16,
    cpu_linear: str = ONEDNN,
) -> torch.Tensor:
    """Per-class scores sum_q softmax(class)[q, k] * sigmoid(mask)[q]: [Q, K+1] class logits,
    [Q, H, W] mask logits -> [K, H, W].

    Computed ``band_rows`` rows at a time, so each band's sigmoid is still in cache for its
    matrix product (the values of one einsum over the whole map, about 0.7x its time at
    512 x 512 with 100 queries and 150 classes); the products as ``cpu_linear``
    (``MODEL.CPU_LINEAR``) chooses (:func:`semask.modeling.onednn_linear.matmul`).
    """
    probs = F.softmax(mask_cls, dim=-1)[..., :-1].t()
    queries, height, width = mask_pred.shape
    scores = mask_pred.new_empty((probs.shape[0], height, width))
    for top in range(0, height, band_rows):
        band = mask_pred[:, top : top + band_rows].sigmoid()
        scores[:, top : top + band_rows] = matmul(
            probs, band.reshape(queries, -1), cpu_linear
        ).view(-1, band.shape[1], width)
    return scores


def panoptic_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    *,
    object_mask_threshold: float,
    overlap_threshold: float,
    thing_ids: Container[int],
) -> Tuple[torch.Tensor, List[Dict]]:
    """Panoptic segmentation from queries: [Q, K+1] class logits, [Q, H, W] mask logits.

    Queries predicting "no object" or scoring at most ``object_mask_threshold`` are dropped; each
    pixel goes to the query with the highest score x mask probability. A query's segment is its
    owned pixels inside its mask (probability >= 0.5); it is dropped if that is empty or if it
    owns fewer pixels than ``overlap_threshold`` x its mask's area (Mask2Former's rule: owned
    pixels outside the mask count too). Stuff classes (not in
    ``thing_ids``) are merged into one segment per class.

    Returns:
        panoptic_seg [H, W] int32 (0 = void, segments numbered from 1) and ``segments_info``
        (``id``, ``isthing``, ``category_id`` per segment).
    """
    num_classes = mask_cls.shape[-1] - 1
    scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    scores, labels, probs = scores[keep], labels[keep], mask_pred[keep].sigmoid()
    panoptic_seg = torch.zeros(mask_pred.shape[-2:], dtype=torch.int32, device=mask_pred.device)
    segments_info: List[Dict] = []
    if len(labels) == 0:
        return panoptic_seg, segments_info

    owner = (scores.view(-1, 1, 1) * probs).argmax(0)
    stuff_segment: Dict[int, int] = {}
    for k in range(len(labels)):
        category = int(labels[k])
        is_thing = category in thing_ids
        owned, in_mask = owner == k, probs[k] >= 0.5
        mask = owned & in_mask
        owned_area, mask_area = int(owned.sum()), int(in_mask.sum())
        if not mask.any() or owned_area / mask_area < overlap_threshold:
            continue
        if not is_thing and category in stuff_segment:
            panoptic_seg[mask] = stuff_segment[category]
            continue
        segment_id = len(segments_info) + 1
        if not is_thing:
            stuff_segment[category] = segment_id
        panoptic_seg[mask] = segment_id
        segments_info.append({"id": segment_id, "isthing": is_thing, "category_id": category})
    return panoptic_seg, segments_info


def instance_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    *,
    topk: int,
    thing_ids: Optional[Container[int]] = None,
) -> Instances:
    """Top-``topk`` (query, class) pairs as instances: [Q, K+1] class logits, [Q, H, W] masks.

    With ``thing_ids``, only thing classes are kept. Scores are class probability x mean mask
    probability inside the binary mask.
    """
    num_queries, num_classes = mask_cls.shape[0], mask_cls.shape[-1] - 1
    probs = F.softmax(mask_cls, dim=-1)[:, :-1]
    labels = torch.arange(num_classes, device=mask_cls.device).repeat(num_queries)
    scores, flat_idx = probs.flatten().topk(min(topk, probs.numel()), sorted=False)
    labels = labels[flat_idx]
    query_idx = flat_idx // num_classes
    if thing_ids is not None:
        is_thing = torch.tensor([int(c) in thing_ids for c in labels], dtype=torch.bool)
        scores, labels, query_idx = scores[is_thing], labels[is_thing], query_idx[is_thing]
    masks = mask_pred[query_idx]
    binary = (masks > 0).float()
    mask_scores = (masks.sigmoid().flatten(1) * binary.flatten(1)).sum(1) / (
        binary.flatten(1).sum(1) + 1e-6
    )
    result = Instances(tuple(mask_pred.shape[-2:]))
    result.pred_masks = binary
    result.pred_boxes = BitMasks(binary > 0).get_bounding_boxes()
    result.scores = scores * mask_scores
    result.pred_classes = labels
    return result
