"""Single-image inference: :class:`SeMaskPredictor`, built on detectron2's ``DefaultPredictor``."""

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from detectron2.utils.file_io import PathManager

from .data.image_io import as_bgr_uint8
from .visualization import resolve_metadata

logger = logging.getLogger(__name__)

STAGE_NAMES = ("res2", "res3", "res4", "res5")


class WeightsError(ValueError):
    """``MODEL.WEIGHTS`` is missing, unreadable or does not fit the model."""


def resolve_weights(weights: str) -> Optional[str]:
    """Local file of ``MODEL.WEIGHTS`` (a path or URL), or None when empty (random weights).

    Raises :class:`WeightsError` naming ``weights`` if it cannot be fetched or is not a file.
    """
    if not weights:
        logger.warning("MODEL.WEIGHTS is empty: the model keeps its random initial weights")
        return None
    try:
        local_path = PathManager.get_local_path(weights)
    except Exception as error:  # any PathManager handler failure
        raise WeightsError(f"MODEL.WEIGHTS {weights!r} could not be fetched: {error}") from error
    if not os.path.isfile(local_path):
        raise WeightsError(f"MODEL.WEIGHTS {weights!r} is no file")
    return local_path


class StrictCheckpointer(DetectionCheckpointer):
    """A ``DetectionCheckpointer`` that raises :class:`WeightsError` instead of loading partially.

    A file that is not a checkpoint, or one that leaves model parameters unloaded (missing keys or
    different shapes), is an error; checkpoint keys the model lacks are only logged.
    """

    def _load_file(self, filename: str) -> Dict[str, Any]:
        try:
            return super()._load_file(filename)
        except Exception as error:  # torch.load / pickle raise many types for a non-checkpoint
            raise WeightsError(f"is not a readable checkpoint: {error}") from error

    def _load_model(self, checkpoint: Dict[str, Any]) -> Any:
        incompatible = super()._load_model(checkpoint)
        problems = [
            f"{key}: checkpoint {tuple(ckpt)} vs model {tuple(mine)}"
            for key, ckpt, mine in incompatible.incorrect_shapes
        ]
        reshaped = {key for key, _, _ in incompatible.incorrect_shapes}
        problems += [f"missing {key}" for key in incompatible.missing_keys if key not in reshaped]
        if problems:
            more = f"; ... ({len(problems)} in all)" if len(problems) > 5 else ""
            raise WeightsError(
                "does not fit the model built from the config: " + "; ".join(problems[:5]) + more
            )
        return incompatible


def _declares_priors(backbone: torch.nn.Module) -> bool:
    """Whether a backbone's ``output_shape()`` lists semantic priors (``prior_res2``..)."""
    return any(name.startswith("prior_") for name in backbone.output_shape())


@dataclass
class SemanticPrediction:
    """The result for one image of ``H x W`` pixels and ``K`` classes, on the CPU.

    ``scores`` [K, H, W] float per-class scores; ``labels`` [H, W] int64 = ``scores.argmax(0)``;
    when priors were asked, ``sem_prior`` [K, H, W] aggregated semantic prior logits and
    ``stage_priors`` (``res2``..``res5`` -> [K, h_i, w_i] raw prior logits at strides 4..32 of the
    resized input).
    """

    scores: torch.Tensor
    labels: torch.Tensor
    sem_prior: Optional[torch.Tensor] = None
    stage_priors: Dict[str, torch.Tensor] = field(default_factory=dict)


class SeMaskPredictor(DefaultPredictor):
    """Build the model of ``cfg``, load ``MODEL.WEIGHTS`` strictly, and segment single images.

    ``predictor(image_bgr)`` returns the model's raw output dict as ``DefaultPredictor`` does;
    :meth:`predict` accepts any image layout :func:`as_bgr_uint8` does and returns a
    :class:`SemanticPrediction`. With ``return_priors`` the model is built with
    ``MODEL.MASK_FORMER.TEST.RETURN_PRIOR True`` so that predictions carry SeMask's priors.
    """

    def __init__(self, cfg: CfgNode, return_priors: bool = False) -> None:
        self.cfg = cfg.clone()
        self.cfg.defrost()
        self.cfg.MODEL.MASK_FORMER.TEST.RETURN_PRIOR = return_priors
        self.cfg.freeze()
        self.return_priors = return_priors
        self.input_format = self.cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {self.input_format!r}")
        weights = resolve_weights(self.cfg.MODEL.WEIGHTS)
        self.model = build_model(self.cfg)
        self.model.eval()
        backbone = getattr(self.model, "backbone", None)
        if return_priors and backbone is not None and not _declares_priors(backbone):
            raise ValueError(
                f"priors were asked for, but backbone {type(backbone).__name__} has no semantic "
                "layers (NUM_SEM_BLOCKS 0?) and so no priors"
            )
        if weights is not None:
            try:
                StrictCheckpointer(self.model).load(weights)
            except WeightsError as error:
                raise WeightsError(f"MODEL.WEIGHTS {self.cfg.MODEL.WEIGHTS!r} {error}") from None
        dataset = self.cfg.DATASETS.TEST[0] if len(self.cfg.DATASETS.TEST) else None
        self.metadata = resolve_metadata(dataset, self.cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
        self.aug = T.ResizeShortestEdge(
            [self.cfg.INPUT.MIN_SIZE_TEST, self.cfg.INPUT.MIN_SIZE_TEST],
            self.cfg.INPUT.MAX_SIZE_TEST,
        )

    def predict(self, image: np.ndarray) -> SemanticPrediction:
        """Segment one image (BGR or any layout :func:`as_bgr_uint8` accepts) of size H x W."""
        output = self(as_bgr_uint8(image))
        scores = output["sem_seg"].detach().float().cpu()
        prediction = SemanticPrediction(scores=scores, labels=scores.argmax(dim=0))
        if self.return_priors:
            if "sem_prior" not in output or "stage_priors" not in output:
                raise KeyError(
                    f"{self.cfg.MODEL.META_ARCHITECTURE} returned no 'sem_prior'/'stage_priors' "
                    "although MODEL.MASK_FORMER.TEST.RETURN_PRIOR is True; priors need a SeMask "
                    "backbone with semantic layers (NUM_SEM_BLOCKS > 0)"
                )
            prediction.sem_prior = output["sem_prior"].detach().float().cpu()
            prediction.stage_priors = {
                name: output["stage_priors"][name].detach().float().cpu()
                for name in STAGE_NAMES
                if name in output["stage_priors"]
            }
        return prediction
