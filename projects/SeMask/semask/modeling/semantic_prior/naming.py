"""How the per-stage semantic priors are named in a backbone's feature dict.

A SeMask backbone returns, next to its stage maps ``res2..res5``, one prior map per stage under
the stage's name with :data:`PRIOR_PREFIX` (``prior_res2..prior_res5``).
"""

from typing import Dict, List, Mapping, Tuple, TypeVar

from detectron2.layers import ShapeSpec

STAGE_NAMES = ("res2", "res3", "res4", "res5")
# Feature ``prior_res{i}`` holds the semantic prior logits of stage ``res{i}``.
PRIOR_PREFIX = "prior_"

Value = TypeVar("Value")


def prior_name(stage: str) -> str:
    """The feature name of ``stage``'s prior: ``"res2"`` -> ``"prior_res2"``."""
    return PRIOR_PREFIX + stage


def is_prior(name: str) -> bool:
    """Whether the feature ``name`` is a stage prior."""
    return name.startswith(PRIOR_PREFIX)


def prior_feature_names(shapes: Mapping[str, ShapeSpec]) -> List[str]:
    """The prior features among a backbone's ``output_shape()``, finest (smallest stride) first."""
    return sorted((name for name in shapes if is_prior(name)), key=lambda n: shapes[n].stride)


def declares_priors(shapes: Mapping[str, ShapeSpec]) -> bool:
    """Whether a backbone's ``output_shape()`` lists any stage prior."""
    return any(is_prior(name) for name in shapes)


def split_features(
    features: Mapping[str, Value],
) -> Tuple[Dict[str, Value], Dict[str, Value]]:
    """Split a feature dict (tensors or ShapeSpecs) into its stage features and its priors.

    Returns ``(stages, priors)``: ``stages`` holds every non-prior entry under its own name,
    ``priors`` every prior under its stage's name (``"prior_res3"`` -> ``"res3"``).
    """
    stages = {name: value for name, value in features.items() if not is_prior(name)}
    priors = {
        name[len(PRIOR_PREFIX) :]: value for name, value in features.items() if is_prior(name)
    }
    return stages, priors
