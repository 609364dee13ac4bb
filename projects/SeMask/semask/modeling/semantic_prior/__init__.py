"""The semantic prior, SeMask's one idea, in one place.

A SeMask backbone predicts per-stage prior logits (:mod:`.naming` says how they are named among
its features), the parameter-free semantic decoder sums them (:mod:`.decoder`), ``loss_cate``
trains them (:mod:`.loss`), inference can return them (:mod:`.outputs`), and the ``MODEL.SEMASK``
keys configure them (:mod:`.settings`).
"""

from .decoder import aggregate_priors, prior_sum, semantic_map
from .loss import CriterionPriorLoss, prior_loss
from .naming import (
    PRIOR_PREFIX,
    STAGE_NAMES,
    declares_priors,
    is_prior,
    prior_feature_names,
    prior_name,
    split_features,
)
from .outputs import prior_outputs, read_prior_outputs
from .settings import (
    PriorSettings,
    effective_key,
    prior_key_conflicts,
    prior_settings,
    published_key,
)

__all__ = [
    "PRIOR_PREFIX",
    "STAGE_NAMES",
    "CriterionPriorLoss",
    "PriorSettings",
    "aggregate_priors",
    "declares_priors",
    "effective_key",
    "is_prior",
    "prior_feature_names",
    "prior_key_conflicts",
    "prior_loss",
    "prior_name",
    "prior_outputs",
    "prior_settings",
    "prior_sum",
    "published_key",
    "read_prior_outputs",
    "semantic_map",
    "split_features",
]
