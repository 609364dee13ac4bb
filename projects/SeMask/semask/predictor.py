"""Inference on images: :class:`SeMaskPredictor`, with the interface of detectron2's
``DefaultPredictor``."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances

from .checkpoint import SeMaskCheckpointer, WeightsError, resolve_weights
from .data.image_io import as_bgr_uint8
from .data.metadata import resolve_metadata
from .engine.validation import validate_config
from .modeling.semantic_prior import declares_priors, read_prior_outputs
from .upsample import resize_nearest, upsampled_argmax

PanopticSegments = Tuple[torch.Tensor, List[Dict[str, Any]]]


@dataclass
class Prediction:
    """The result for one image of ``H x W`` pixels and ``K`` classes, on the CPU.

    ``labels`` [H, W] int64, ``panoptic_seg`` and ``instances`` are at the image's resolution;
    every other map is at the model's: the image resized by ``INPUT.MIN_SIZE_TEST``/
    ``MAX_SIZE_TEST`` to ``h x w``, so that memory does not grow with the image. ``scores``
    [K, h, w] float per-class scores; ``labels`` is the argmax of ``scores`` upsampled bilinearly
    to [K, H, W] (what the model returns for ``height`` H and ``width`` W), computed in row bands
    by :func:`semask.upsample.upsampled_argmax`; both are None when the model infers no semantic
    segmentation (``MODEL.MASK_FORMER.TEST.SEMANTIC_ON False``). When priors were asked,
    ``sem_prior`` [K, h, w] aggregated semantic prior logits and ``stage_priors`` (``res2``..
    ``res5`` -> [K, h_i, w_i] raw prior logits at strides 4..32 of the resized input).

    With ``PANOPTIC_ON``, ``panoptic_seg`` is (segment ids [H, W] int32, 0 void; segments_info:
    per segment ``id``, ``category_id`` (contiguous, of the K classes), ``isthing`` and ``area``
    in pixels); with ``INSTANCE_ON``, ``instances`` of image size (H, W) hold ``pred_masks``
    [N, H, W] bool, ``pred_boxes``, ``scores`` [N] and ``pred_classes`` [N] (of the K classes).
    Both are inferred at ``h x w`` and resized to ``H x W`` (nearest neighbour; boxes enclose
    the resized masks).
    """

    scores: Optional[torch.Tensor] = None
    labels: Optional[torch.Tensor] = None
    sem_prior: Optional[torch.Tensor] = None
    stage_priors: Dict[str, torch.Tensor] = field(default_factory=dict)
    panoptic_seg: Optional[PanopticSegments] = None
    instances: Optional[Instances] = None


def resize_panoptic(panoptic_seg: PanopticSegments, height: int, width: int) -> PanopticSegments:
    """The model's (ids [h, w] int32, segments_info) resized to [height, width]; each segment
    gets its ``area`` there, and segments left without pixels are dropped."""
    ids, segments_info = panoptic_seg
    ids = resize_nearest(ids.cpu(), height, width)
    values, counts = torch.unique(ids, return_counts=True)
    areas = dict(zip(values.tolist(), counts.tolist()))
    return ids, [dict(s, area=areas[s["id"]]) for s in segments_info if s["id"] in areas]


def resize_instances(instances: Instances, height: int, width: int) -> Instances:
    """The model's instances (``pred_masks`` [N, h, w], ``scores``, ``pred_classes``) at image
    size (height, width): masks resized to bool [N, height, width], boxes enclosing them."""
    instances = instances.to("cpu")
    masks = resize_nearest(instances.pred_masks > 0.5, height, width)
    resized = Instances((height, width))
    resized.pred_masks = masks
    resized.pred_boxes = BitMasks(masks).get_bounding_boxes()
    resized.scores = instances.scores
    resized.pred_classes = instances.pred_classes
    return resized


# Not a DefaultPredictor: its __init__ (detectron2 0.6 and main) has no hook for strict, safe loads.
class SeMaskPredictor:
    """Build the model of ``cfg``, load ``MODEL.WEIGHTS`` strictly (unless
    ``TEST.ALLOW_PARTIAL_WEIGHTS``) and safely, and segment single images.

    It has ``DefaultPredictor``'s attributes (``cfg``, ``model``, ``metadata``, ``aug``,
    ``input_format``) and call without deriving from it: ``DefaultPredictor.__init__`` builds the
    model before ``MODEL.WEIGHTS`` is checked and loads it with a non-strict
    ``DetectionCheckpointer`` that unpickles ``.pkl`` files fully, and nothing else of it is used.
    ``predictor(image_bgr)`` returns the model's raw output dict as ``DefaultPredictor`` does;
    :meth:`predict` accepts any image layout :func:`as_bgr_uint8` does and returns a
    :class:`Prediction`. With ``return_priors`` the model is built with
    ``MODEL.SEMASK.RETURN_PRIOR True`` so that predictions carry SeMask's priors.
    """

    def __init__(self, cfg: CfgNode, return_priors: bool = False) -> None:
        self.cfg = cfg.clone()
        self.cfg.defrost()
        self.cfg.MODEL.SEMASK.RETURN_PRIOR = return_priors
        self.cfg.freeze()
        self.return_priors = return_priors
        self.input_format = self.cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {self.input_format!r}")
        validate_config(self.cfg, datasets=False)
        weights = resolve_weights(self.cfg.MODEL.WEIGHTS)
        self.model = build_model(self.cfg)
        self.model.eval()
        backbone = getattr(self.model, "backbone", None)
        if return_priors and backbone is not None and not declares_priors(backbone.output_shape()):
            raise ValueError(
                f"priors were asked for, but backbone {type(backbone).__name__} has no semantic "
                "layers (NUM_SEM_BLOCKS 0?) and so no priors"
            )
        if weights is not None:
            checkpointer = SeMaskCheckpointer(
                self.model,
                strict=not self.cfg.TEST.ALLOW_PARTIAL_WEIGHTS,
                allow_unsafe_pickle=self.cfg.MODEL.ALLOW_UNSAFE_PICKLE,
            )
            try:
                checkpointer.load(weights)
            except WeightsError as error:
                raise type(error)(f"MODEL.WEIGHTS {self.cfg.MODEL.WEIGHTS!r}: {error}") from None
        dataset = self.cfg.DATASETS.TEST[0] if len(self.cfg.DATASETS.TEST) else None
        self.metadata = resolve_metadata(
            dataset,
            self.cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            panoptic=self.cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON,
        )
        self.aug = T.ResizeShortestEdge(
            [self.cfg.INPUT.MIN_SIZE_TEST, self.cfg.INPUT.MIN_SIZE_TEST],
            self.cfg.INPUT.MAX_SIZE_TEST,
        )

    def model_inputs(self, image_bgr: np.ndarray) -> Dict[str, Any]:
        """The model's input for a BGR image [H, W, 3]: ``image`` float32 [3, h, w], resized by
        ``self.aug``, in ``INPUT.FORMAT``; ``height``/``width`` H, W (outputs at full size)."""
        if self.input_format == "RGB":
            image_bgr = image_bgr[:, :, ::-1]
        height, width = image_bgr.shape[:2]
        image = self.aug.get_transform(image_bgr).apply_image(image_bgr)
        image = torch.as_tensor(image.astype("float32").transpose(2, 0, 1))
        return {"image": image, "height": height, "width": width}

    def __call__(self, original_image: np.ndarray) -> Dict[str, Any]:
        """The model's raw output dict for a BGR image [H, W, 3], at the image's size."""
        with torch.no_grad():
            return self.model([self.model_inputs(original_image)])[0]

    def predict(self, image: np.ndarray) -> Prediction:
        """Segment one image (BGR or any layout :func:`as_bgr_uint8` accepts) of size H x W.

        The model runs and answers at the test resize (see :class:`Prediction`); ``labels``,
        ``panoptic_seg`` and ``instances`` are brought to H x W.
        """
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray], batch_size: int = 1) -> List[Prediction]:
        """Segment ``images`` (as :meth:`predict`; any mix of sizes), ``batch_size`` per forward
        pass; one prediction per image, in order, equal to :meth:`predict` of each.

        Only images of the same test-resized size share a pass: a mixed batch would be padded to
        one size, and padding changes what attention-based models answer.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        inputs, sizes = [], []
        for image in images:
            item = self.model_inputs(as_bgr_uint8(image))
            sizes.append((item["height"], item["width"]))
            item["height"], item["width"] = item["image"].shape[1:]  # answer at the test resize
            inputs.append(item)
        by_size: Dict[tuple, List[int]] = {}
        for index, item in enumerate(inputs):
            by_size.setdefault(tuple(item["image"].shape[1:]), []).append(index)
        predictions: List[Optional[Prediction]] = [None] * len(inputs)
        for indices in by_size.values():
            for first in range(0, len(indices), batch_size):
                batch = indices[first : first + batch_size]
                with torch.no_grad():
                    outputs = self.model([inputs[i] for i in batch])
                for index, output in zip(batch, outputs):
                    predictions[index] = self._prediction(output, *sizes[index])
        return predictions

    def _prediction(self, output: Dict[str, Any], height: int, width: int) -> Prediction:
        """The prediction of one model output (at the test resize) for an image of H x W."""
        prediction = Prediction()
        if "sem_seg" in output:
            prediction.scores = output["sem_seg"].detach().float().cpu()
            prediction.labels = upsampled_argmax(prediction.scores, height, width)
        if "panoptic_seg" in output:
            prediction.panoptic_seg = resize_panoptic(output["panoptic_seg"], height, width)
        if "instances" in output:
            prediction.instances = resize_instances(output["instances"], height, width)
        if self.return_priors:
            prediction.sem_prior, prediction.stage_priors = read_prior_outputs(
                output, self.cfg.MODEL.META_ARCHITECTURE
            )
        return prediction
