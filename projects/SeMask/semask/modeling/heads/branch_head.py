"""SeMask's mask-classification head: pixel decoder + transformer decoder + semantic decoder."""

from typing import Dict, List

from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import Tensor, nn

from ..pixel_decoder import build_pixel_decoder
from ..semantic_prior import prior_feature_names, prior_settings, prior_sum, semantic_map
from ..transformer_decoder import build_transformer_decoder

TRANSFORMER_INPUTS = ("multi_scale_pixel_decoder", "transformer_encoder", "pixel_embedding")


def _check_transformer_in_feature(name: str, input_shape: Dict[str, ShapeSpec]) -> None:
    """Raise a ValueError unless the predictor's input ``name`` is a known source."""
    if name not in TRANSFORMER_INPUTS and name not in input_shape:
        raise ValueError(
            f"MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE={name!r} is neither one of "
            f"{TRANSFORMER_INPUTS} nor a backbone output {sorted(input_shape)}"
        )


@SEM_SEG_HEADS_REGISTRY.register()
class BranchMaskFormerHead(nn.Module):
    """MaskFormer/Mask2Former head with SeMask's semantic branch (official name).

    ``pixel_decoder`` turns the backbone stage maps into per-pixel embeddings, ``predictor`` (the
    transformer decoder) predicts query classes and masks, and the parameter-free semantic decoder
    (:func:`semask.modeling.semantic_prior.aggregate_priors`) sums the backbone's per-stage prior
    maps (``prior_res*``).

    Args:
        input_shape: the backbone's output shapes, priors included
            (:func:`semask.modeling.semantic_prior.prior_feature_names`).
        pixel_decoder: a pixel decoder with ``forward_features``.
        transformer_predictor: a transformer decoder.
        transformer_in_feature: what the predictor reads: ``multi_scale_pixel_decoder``,
            ``transformer_encoder``, ``pixel_embedding`` or a backbone feature name.
        num_classes: K.
        prior_at_inference: return the semantic decoder's output ``sem_pred`` in eval mode (for
            ``MODEL.SEMASK.RETURN_PRIOR``); inference without it skips the semantic decoder,
            which no prediction needs. Training returns the stride-4 ``prior_sum`` instead,
            which ``loss_cate`` resizes inside the loss.
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        pixel_decoder: nn.Module,
        transformer_predictor: nn.Module,
        transformer_in_feature: str,
        num_classes: int,
        prior_at_inference: bool = True,
    ) -> None:
        super().__init__()
        _check_transformer_in_feature(transformer_in_feature, input_shape)
        self.prior_features: List[str] = prior_feature_names(input_shape)
        self.pixel_decoder = pixel_decoder
        self.predictor = transformer_predictor
        self.transformer_in_feature = transformer_in_feature
        self.num_classes = num_classes
        self.prior_at_inference = prior_at_inference

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        head = cfg.MODEL.SEM_SEG_HEAD
        in_feature = cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE
        _check_transformer_in_feature(in_feature, input_shape)
        if in_feature in ("transformer_encoder", "multi_scale_pixel_decoder"):
            predictor_channels = head.CONVS_DIM
        elif in_feature == "pixel_embedding":
            predictor_channels = head.MASK_DIM
        else:
            predictor_channels = input_shape[in_feature].channels
        missing = [name for name in head.IN_FEATURES if name not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.IN_FEATURES: {missing} not among the backbone outputs "
                f"{sorted(input_shape)}"
            )
        decoder_shape = {k: v for k, v in input_shape.items() if k in head.IN_FEATURES}
        return {
            "input_shape": input_shape,
            "pixel_decoder": build_pixel_decoder(cfg, decoder_shape),
            "transformer_predictor": build_transformer_decoder(
                cfg, predictor_channels, mask_classification=True
            ),
            "transformer_in_feature": in_feature,
            "num_classes": head.NUM_CLASSES,
            "prior_at_inference": prior_settings(cfg).return_prior,
        }

    def forward(self, features: Dict[str, Tensor]) -> dict:
        """``features``: the backbone outputs (stage maps and ``prior_res*`` maps).

        Returns ``pred_logits`` [B, Q, K + 1], ``pred_masks`` [B, Q, H/4, W/4], ``aux_outputs``
        and, when the backbone gives priors, in training ``prior_sum`` [B, K, H/4, W/4] (the
        finest prior's size) and in eval mode with ``prior_at_inference`` ``sem_pred``
        [B, K, H, W] (4x that, i.e. the padded input size).
        """
        mask_features, encoder_features, multi_scale = self.pixel_decoder.forward_features(features)
        if self.transformer_in_feature == "multi_scale_pixel_decoder":
            source = multi_scale
        elif self.transformer_in_feature == "transformer_encoder":
            if encoder_features is None:
                raise ValueError(
                    "TRANSFORMER_IN_FEATURE='transformer_encoder' needs a pixel decoder with a "
                    f"transformer encoder; {type(self.pixel_decoder).__name__} has none"
                )
            source = encoder_features
        elif self.transformer_in_feature == "pixel_embedding":
            source = mask_features
        else:
            source = features[self.transformer_in_feature]
        predictions = self.predictor(source, mask_features)
        if self.prior_features and self.training:
            predictions["prior_sum"] = prior_sum(features, self.prior_features)
        elif self.prior_features and self.prior_at_inference:
            predictions["sem_pred"] = semantic_map(features, self.prior_features)
        return predictions
