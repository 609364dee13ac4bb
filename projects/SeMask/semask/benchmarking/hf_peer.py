"""The peer for ``--compare-with hf``: transformers' Mask2Former with a Swin-T backbone, 150
labels and random weights, built offline from a config (nothing is downloaded)."""

import importlib.util

import torch
import torch.nn.functional as F

from .inputs import synthetic_samples
from .subjects import Settings, Subject, SubjectSpec, grad_scaler, prepare

# ImageNet mean / std on the 0-255 scale, as this project's configs use
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class PeerUnavailableError(RuntimeError):
    """The peer model's package is not installed."""


def require_transformers() -> None:
    """Raise :class:`PeerUnavailableError` with the install command if ``transformers`` is
    missing."""
    if importlib.util.find_spec("transformers") is None:
        raise PeerUnavailableError(
            "--compare-with hf needs the optional package 'transformers' (pip install "
            "transformers), which is not installed; run without --compare-with to benchmark "
            "this project's model alone"
        )


def build_hf_mask2former(num_labels: int = 150) -> torch.nn.Module:
    """``Mask2FormerForUniversalSegmentation`` with Swin-T (embed 96, depths 2-2-6-2, window 7)
    and the Mask2Former defaults (100 queries, 6 encoder and 10 decoder layers), random weights."""
    require_transformers()
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

    backbone = SwinConfig(
        embed_dim=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        window_size=7,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=backbone,
        num_labels=num_labels,
        id2label={i: str(i) for i in range(num_labels)},
        label2id={str(i): i for i in range(num_labels)},
    )
    return Mask2FormerForUniversalSegmentation(config)


def semantic_scores(outputs: object, size: tuple) -> torch.Tensor:
    """[B, K, H, W] class-probability-weighted mask scores, as this project's semantic inference
    computes them from [B, Q, K + 1] logits and [B, Q, h, w] masks."""
    masks = F.interpolate(outputs.masks_queries_logits, size=size, mode="bilinear")
    classes = outputs.class_queries_logits.softmax(-1)[..., :-1]
    return torch.einsum("bqc,bqhw->bchw", classes, masks.sigmoid())


def hf_subject(spec: SubjectSpec, settings: Settings) -> Subject:
    """The HF peer on the same synthetic samples as this project's model: pixel values
    normalised in each call, and per image one binary mask per present class for training."""
    model = prepare(build_hf_mask2former(spec.num_classes), settings, ["model"])
    device = torch.device(settings.device)
    samples = synthetic_samples(
        batch=spec.batch, height=spec.height, width=spec.width, num_classes=spec.num_classes
    )
    images = torch.stack([s["image"] for s in samples]).to(device)
    mean = torch.tensor(PIXEL_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, device=device).view(1, 3, 1, 1)
    class_labels, mask_labels = [], []
    for sample in samples:
        labels = sample["sem_seg"].to(device)
        present = [c for c in labels.unique().tolist() if c != 255]
        class_labels.append(torch.tensor(present, device=device))
        mask_labels.append(torch.stack([labels == c for c in present]).float())

    def pixels() -> torch.Tensor:
        values = (images.float() - mean) / std
        if settings.channels_last:
            values = values.contiguous(memory_format=torch.channels_last)
        return values

    def infer() -> torch.Tensor:
        return semantic_scores(model(pixel_values=pixels()), (spec.height, spec.width))

    def loss() -> torch.Tensor:
        return model(pixel_values=pixels(), mask_labels=mask_labels, class_labels=class_labels).loss

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    return Subject(
        name="hf",
        model=model,
        infer_fn=infer,
        loss_fn=loss,
        optimizer=optimizer,
        settings=settings,
        scores_fn=lambda scores: scores,
        scaler=grad_scaler(settings),
    )
