"""The prior's config keys: the ``MODEL.SEMASK`` node and the published spellings it replaces.

One rule for the four keys ``NUM_SEM_BLOCKS``, ``SEM_WINDOW_SIZE``, ``CATE_WEIGHT`` and
``RETURN_PRIOR``: ``MODEL.SEMASK.<KEY>`` defaults to None ("not set"). Set, it wins; not set, the
published key is read: ``MODEL.SWIN.<KEY>`` or ``MODEL.MIT.<KEY>`` of the backbone in use for the
first two, ``MODEL.MASK_FORMER.CATE_WEIGHT`` and ``MODEL.MASK_FORMER.TEST.RETURN_PRIOR`` for the
others. When both are given and differ (the published key changed from its default to a value
other than the ``MODEL.SEMASK`` one), validation logs a WARNING naming both keys
(:func:`prior_key_conflicts`). Every component reads these values through :func:`prior_settings`.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, List, Optional, Tuple

from detectron2.config import CfgNode, get_cfg

from ...config import add_semask_config, config_value

NODE = "MODEL.SEMASK"
# Where each SeMask backbone reads its published NUM_SEM_BLOCKS / SEM_WINDOW_SIZE.
BACKBONE_SECTIONS = {
    "D2SeMaskSwinTransformer": "MODEL.SWIN",
    "D2SwinTransformer": "MODEL.SWIN",
    "D2SeMaskMiT": "MODEL.MIT",
}
# A backbone outside SeMask has no priors; its configs are read against the Swin section.
FALLBACK_SECTION = "MODEL.SWIN"
BACKBONE_KEYS = ("NUM_SEM_BLOCKS", "SEM_WINDOW_SIZE")
PUBLISHED_KEYS = {
    "CATE_WEIGHT": "MODEL.MASK_FORMER.CATE_WEIGHT",
    "RETURN_PRIOR": "MODEL.MASK_FORMER.TEST.RETURN_PRIOR",
}
KEYS = BACKBONE_KEYS + tuple(PUBLISHED_KEYS)


@dataclass(frozen=True)
class PriorSettings:
    """The resolved prior settings of one config.

    Attributes:
        num_sem_blocks: semantic-attention blocks per stage (0: no semantic layers, no priors).
        sem_window_size: window side of the windowed semantic layers.
        windowed_stages: stages (0..3) whose semantic layer attends in windows.
        cate_weight: weight of ``loss_cate`` (0: no prior loss).
        return_prior: inference also returns ``sem_prior`` and ``stage_priors``.
    """

    num_sem_blocks: int
    sem_window_size: int
    windowed_stages: Tuple[int, ...]
    cate_weight: float
    return_prior: bool


def backbone_section(cfg: CfgNode) -> str:
    """``MODEL.SWIN`` or ``MODEL.MIT``: the section of ``MODEL.BACKBONE.NAME``."""
    return BACKBONE_SECTIONS.get(cfg.MODEL.BACKBONE.NAME, FALLBACK_SECTION)


def published_key(cfg: CfgNode, name: str, section: Optional[str] = None) -> str:
    """The published spelling of ``MODEL.SEMASK.<name>`` (``section``: the backbone's, by
    default that of ``MODEL.BACKBONE.NAME``)."""
    if name in PUBLISHED_KEYS:
        return PUBLISHED_KEYS[name]
    if name not in BACKBONE_KEYS:
        raise KeyError(f"{NODE}.{name} is not one of the resolved prior keys {list(KEYS)}")
    return f"{section or backbone_section(cfg)}.{name}"


def effective_key(cfg: CfgNode, name: str, section: Optional[str] = None) -> str:
    """The key whose value ``cfg`` uses for ``name``: ``MODEL.SEMASK.<name>`` when set, else
    its published spelling."""
    key = f"{NODE}.{name}"
    return key if config_value(cfg, key) is not None else published_key(cfg, name, section)


def prior_settings(cfg: CfgNode, section: Optional[str] = None) -> PriorSettings:
    """Resolve the prior keys of ``cfg`` (a merged config; no ``setup_cfg`` needed).

    ``section`` (``"MODEL.SWIN"``/``"MODEL.MIT"``) is the published section of the backbone
    being built; by default the one of ``MODEL.BACKBONE.NAME``.
    """
    values: Dict[str, Any] = {
        name: config_value(cfg, effective_key(cfg, name, section)) for name in KEYS
    }
    return PriorSettings(
        num_sem_blocks=values["NUM_SEM_BLOCKS"],
        sem_window_size=values["SEM_WINDOW_SIZE"],
        windowed_stages=tuple(config_value(cfg, f"{NODE}.WINDOWED_STAGES")),
        cate_weight=values["CATE_WEIGHT"],
        return_prior=values["RETURN_PRIOR"],
    )


@lru_cache(maxsize=1)
def _defaults() -> CfgNode:
    cfg = get_cfg()
    add_semask_config(cfg)
    return cfg


def prior_key_conflicts(cfg: CfgNode) -> List[str]:
    """One message per ``MODEL.SEMASK`` key that overrides a different, non-default value of its
    published spelling (the backbone keys of the backbone in use only)."""
    names = KEYS if cfg.MODEL.BACKBONE.NAME in BACKBONE_SECTIONS else tuple(PUBLISHED_KEYS)
    messages = []
    for name in names:
        new, old = f"{NODE}.{name}", published_key(cfg, name)
        value, published = config_value(cfg, new), config_value(cfg, old)
        if value is None or published == value or published == config_value(_defaults(), old):
            continue
        messages.append(
            f"{new} = {value!r} overrides {old} = {published!r} (a {NODE} key, when set, wins "
            "over its published spelling)"
        )
    return messages
