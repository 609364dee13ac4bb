"""Start-up checks of a config: every value SeMask's components cannot work with is reported at
once, by key, before a model is built or any data is loaded."""

import logging
from typing import Any, Sequence

from detectron2.config import CfgNode
from detectron2.utils import comm

from ..data.mapper import DATASET_MAPPERS
from ..data.train_mapper import LSJ_MAPPERS
from ..modeling.matcher import MASK_LOSSES
from ..modeling.meta_arch.families import decoder_problems, fork_name_problems, windowing_problems
from ..modeling.semantic_prior import STAGE_NAMES, effective_key, prior_key_conflicts
from .amp import PRECISIONS
from .checker import Checker, is_int, is_number
from .dataset_checks import check_datasets

SWIN_BACKBONES = ("D2SeMaskSwinTransformer", "D2SwinTransformer")
MIT_BACKBONES = ("D2SeMaskMiT",)
MASK_FORMER_ARCHITECTURES = ("SeMaskMaskFormer",)
RELATIVE_CROPS = ("relative", "relative_range")
ABSOLUTE_CROPS = ("absolute", "absolute_range")


logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config value SeMask cannot work with; the message names every bad key and value."""


def validate_config(cfg: CfgNode, *, datasets: bool = True) -> None:
    """Raise :class:`ConfigError` listing every key of ``cfg`` SeMask cannot work with.

    Checks the class count, the ignore value, the selected backbone's section
    (``MODEL.BACKBONE.NAME``), the mask-former keys, input sizes and the batch size; with
    ``datasets`` also that every data set of ``DATASETS.TRAIN`` and ``DATASETS.TEST`` is
    registered with the model's class count and that every test set can be evaluated, the
    evaluator's packages installed (:func:`~semask.engine.dataset_checks.check_datasets`; only
    metadata is read). Panoptic and instance outputs need a mask-classification model and no
    test-time augmentation.
    Names only a published fork's YAML uses are refused, and a mask-classification config must
    have the transformer decoder of its published family
    (:mod:`semask.modeling.meta_arch.families`); windowed stages other than the family's are
    allowed (a new model) but logged as a WARNING, since that family's checkpoints compute their
    published function only with its own stages. The prior keys are checked where their values
    come from (``MODEL.SEMASK.*`` when set, else the published spelling); a ``MODEL.SEMASK`` key
    overriding a different published value is logged as a WARNING naming both.
    """
    checker = Checker(cfg)
    checker.problems.extend(fork_name_problems(cfg))
    num_classes_ok = checker.check(
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
        lambda v: is_int(v) and v >= 1,
        "must be an integer >= 1 (0 in a config file or override: the training set's class count)",
    )
    if num_classes_ok:
        _check_ignore_value(checker)
    backbone = cfg.MODEL.BACKBONE.NAME
    if backbone in SWIN_BACKBONES:
        _check_swin(checker, semantic=backbone == "D2SeMaskSwinTransformer")
    elif backbone in MIT_BACKBONES:
        _check_mit(checker)
    checker.number_at_least(effective_key(cfg, "CATE_WEIGHT"), 0)
    checker.check(
        effective_key(cfg, "RETURN_PRIOR"), lambda v: isinstance(v, bool), "must be True or False"
    )
    for conflict in prior_key_conflicts(cfg):
        logger.warning(conflict)
    if cfg.MODEL.META_ARCHITECTURE in MASK_FORMER_ARCHITECTURES:
        _check_mask_former(checker)
        checker.problems.extend(decoder_problems(cfg))
        for problem in windowing_problems(cfg):
            logger.warning(f"{problem} (fine for a model trained so; not for that fork's weights)")
    _check_input(checker)
    _check_outputs(checker)
    _check_slide(checker)
    _check_solver(checker)
    if datasets and num_classes_ok:
        check_datasets(checker)
    if checker.problems:
        raise ConfigError(
            "invalid config:\n" + "\n".join(f"  {problem}" for problem in checker.problems)
        )


def _check_ignore_value(checker: Checker) -> None:
    num_classes = checker.get("MODEL.SEM_SEG_HEAD.NUM_CLASSES")
    checker.check(
        "MODEL.SEM_SEG_HEAD.IGNORE_VALUE",
        lambda v: is_int(v) and not 0 <= v < num_classes,
        f"must be an integer that is not a class id (0..{num_classes - 1})",
    )


def _check_semantic_window(checker: Checker, section: str) -> None:
    blocks = effective_key(checker.cfg, "NUM_SEM_BLOCKS", section)
    if checker.int_at_least(blocks, 0) and checker.get(blocks):
        checker.int_at_least(effective_key(checker.cfg, "SEM_WINDOW_SIZE", section), 1)
        checker.check(
            "MODEL.SEMASK.WINDOWED_STAGES",
            lambda v: len(set(v)) == len(v) and all(is_int(x) and 0 <= x <= 3 for x in v),
            "must be distinct stage indices 0..3",
        )


def _check_out_features(checker: Checker, key: str) -> None:
    checker.check(
        key,
        lambda v: len(v) > 0 and set(v) <= set(STAGE_NAMES),
        f"must be a non-empty subset of {list(STAGE_NAMES)}",
    )


def _check_heads_divide(checker: Checker, key: str, widths: Sequence[int], heads_key: str) -> None:
    heads = checker.get(heads_key)
    for stage, (width, head_count) in enumerate(zip(widths, heads)):
        if width % head_count:
            checker.fail(
                heads_key,
                list(heads),
                f"stage {stage + 1} width {width} ({key}) is not divisible by {head_count} heads",
            )
            return


def _check_swin(checker: Checker, *, semantic: bool) -> None:
    s = "MODEL.SWIN"
    checker.int_at_least(f"{s}.PATCH_SIZE", 1)
    checker.int_at_least(f"{s}.WINDOW_SIZE", 1)
    checker.int_at_least(f"{s}.PRETRAIN_IMG_SIZE", 1)
    checker.check(f"{s}.MLP_RATIO", lambda v: is_number(v) and v > 0, "must be > 0")
    for rate in ("DROP_RATE", "ATTN_DROP_RATE", "DROP_PATH_RATE"):
        checker.fraction(f"{s}.{rate}")
    checker.check(
        f"{s}.FROZEN_STAGES",
        lambda v: is_int(v) and -1 <= v <= 4,
        "must be an integer in -1..4",
    )
    _check_out_features(checker, f"{s}.OUT_FEATURES")
    embed_ok = checker.int_at_least(f"{s}.EMBED_DIM", 1)
    checker.stages(f"{s}.DEPTHS", 1)
    if checker.stages(f"{s}.NUM_HEADS", 1) and embed_ok:
        widths = [checker.get(f"{s}.EMBED_DIM") * 2**i for i in range(4)]
        _check_heads_divide(checker, f"{s}.EMBED_DIM", widths, f"{s}.NUM_HEADS")
    if semantic:
        _check_semantic_window(checker, s)


def _check_mit(checker: Checker) -> None:
    m = "MODEL.MIT"
    checker.check(f"{m}.MLP_RATIO", lambda v: is_number(v) and v > 0, "must be > 0")
    for rate in ("DROP_RATE", "ATTN_DROP_RATE", "DROP_PATH_RATE"):
        checker.fraction(f"{m}.{rate}")
    _check_out_features(checker, f"{m}.OUT_FEATURES")
    checker.stages(f"{m}.DEPTHS", 1)
    checker.stages(f"{m}.SR_RATIOS", 1)
    dims_ok = checker.stages(f"{m}.EMBED_DIMS", 1)
    if checker.stages(f"{m}.NUM_HEADS", 1) and dims_ok:
        _check_heads_divide(
            checker, f"{m}.EMBED_DIMS", checker.get(f"{m}.EMBED_DIMS"), f"{m}.NUM_HEADS"
        )
    _check_semantic_window(checker, m)


def _check_mask_former(checker: Checker) -> None:
    mf = "MODEL.MASK_FORMER"
    hidden_ok = checker.int_at_least(f"{mf}.HIDDEN_DIM", 1)
    if checker.int_at_least(f"{mf}.NHEADS", 1) and hidden_ok:
        checker.check(
            f"{mf}.HIDDEN_DIM",
            lambda v: v % checker.get(f"{mf}.NHEADS") == 0,
            f"must be divisible by {mf}.NHEADS ({checker.get(f'{mf}.NHEADS')})",
        )
    checker.int_at_least(f"{mf}.NUM_OBJECT_QUERIES", 1)
    checker.int_at_least(f"{mf}.DEC_LAYERS", 1)
    checker.int_at_least(f"{mf}.ENC_LAYERS", 0)
    checker.int_at_least(f"{mf}.DIM_FEEDFORWARD", 1)
    checker.int_at_least(f"{mf}.TRAIN_NUM_POINTS", 1)
    checker.int_at_least(f"{mf}.SIZE_DIVISIBILITY", 0)
    checker.number_at_least(f"{mf}.OVERSAMPLE_RATIO", 1)
    checker.fraction(f"{mf}.IMPORTANCE_SAMPLE_RATIO")
    checker.fraction(f"{mf}.DROPOUT")
    for weight in ("CLASS_WEIGHT", "DICE_WEIGHT", "MASK_WEIGHT", "NO_OBJECT_WEIGHT"):
        checker.number_at_least(f"{mf}.{weight}", 0)
    checker.one_of(f"{mf}.MASK_LOSS", MASK_LOSSES)
    checker.int_at_least("MODEL.SEM_SEG_HEAD.MASK_DIM", 1)


def _check_dataset_mapper(checker: Checker) -> None:
    """A known mapper; one that gives ``instances`` for a mask-classification model; for
    large-scale jitter a target size and a scale range."""
    key = "INPUT.DATASET_MAPPER_NAME"
    if not checker.one_of(key, sorted(DATASET_MAPPERS)):
        return
    if checker.get(key) in LSJ_MAPPERS:
        checker.int_at_least("INPUT.IMAGE_SIZE", 1)
        if checker.check("INPUT.MIN_SCALE", lambda v: is_number(v) and v > 0, "must be > 0"):
            min_scale = checker.get("INPUT.MIN_SCALE")
            checker.check(
                "INPUT.MAX_SCALE",
                lambda v: is_number(v) and v >= min_scale,
                f"must be >= INPUT.MIN_SCALE ({min_scale})",
            )
    architecture = checker.get("MODEL.META_ARCHITECTURE")
    if architecture in MASK_FORMER_ARCHITECTURES:
        with_instances = sorted(name for name, masks in DATASET_MAPPERS.items() if masks)
        checker.check(
            key,
            lambda v: DATASET_MAPPERS[v],
            f"gives no 'instances', which {architecture} trains on: must be one of "
            f"{with_instances}",
        )


def _check_input(checker: Checker) -> None:
    _check_dataset_mapper(checker)
    checker.check(
        "INPUT.MIN_SIZE_TRAIN",
        lambda v: len(v) > 0 and all(is_int(x) and x >= 1 for x in v),
        "must be integers >= 1",
    )
    checker.int_at_least("INPUT.MIN_SIZE_TEST", 0)
    checker.int_at_least("INPUT.MAX_SIZE_TEST", 1)
    if not checker.get("INPUT.CROP.ENABLED"):
        return
    if not checker.one_of("INPUT.CROP.TYPE", RELATIVE_CROPS + ABSOLUTE_CROPS):
        return
    if checker.get("INPUT.CROP.TYPE") in RELATIVE_CROPS:
        checker.check(
            "INPUT.CROP.SIZE",
            lambda v: len(v) == 2 and all(is_number(x) and 0 < x <= 1 for x in v),
            f"must be 2 fractions in (0, 1] for INPUT.CROP.TYPE {checker.get('INPUT.CROP.TYPE')!r}",
        )
    else:
        checker.check(
            "INPUT.CROP.SIZE",
            lambda v: len(v) == 2 and all(is_int(x) and x >= 1 for x in v),
            f"must be 2 integers >= 1 for INPUT.CROP.TYPE {checker.get('INPUT.CROP.TYPE')!r}",
        )


def _is_size(value: Any) -> bool:
    """(height, width): 2 integers >= 1."""
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(is_int(x) and x >= 1 for x in value)
    )


def _check_slide(checker: Checker) -> None:
    s = "TEST.SLIDE"
    pair = "must be 2 integers (height, width) >= 1"
    crop_ok = checker.check(f"{s}.CROP_SIZE", _is_size, pair)
    if checker.check(f"{s}.STRIDE", _is_size, pair) and crop_ok:
        crop = list(checker.get(f"{s}.CROP_SIZE"))
        checker.check(
            f"{s}.STRIDE",
            lambda v: all(a <= b for a, b in zip(v, crop)),
            f"must be at most {s}.CROP_SIZE {crop} (else windows leave pixels uncovered)",
        )
    checker.int_at_least(f"{s}.BATCH_SIZE", 1)
    if not checker.get(f"{s}.ENABLED"):
        return
    test = "MODEL.MASK_FORMER.TEST"
    for key, wanted in (("SEMANTIC_ON", True), ("PANOPTIC_ON", False), ("INSTANCE_ON", False)):
        checker.check(
            f"{test}.{key}",
            lambda v, wanted=wanted: bool(v) == wanted,
            f"must be {wanted} with {s}.ENABLED (sliding windows give semantic scores only)",
        )
    checker.check(
        effective_key(checker.cfg, "RETURN_PRIOR"),
        lambda v: not v,
        f"must be False with {s}.ENABLED (priors are not averaged over windows; the demo's "
        "--show-priors needs whole-image inference)",
    )


def _check_solver(checker: Checker) -> None:
    world_size = comm.get_world_size()
    checker.check(
        "SOLVER.IMS_PER_BATCH",
        lambda v: is_int(v) and v >= 1 and v % world_size == 0,
        f"must be an integer >= 1 divisible by the number of processes ({world_size})",
    )
    if checker.get("SOLVER.AMP.ENABLED"):
        checker.one_of("SOLVER.AMP.PRECISION", sorted(PRECISIONS))


def _check_outputs(checker: Checker) -> None:
    """Panoptic and instance outputs need a mask-classification model and whole-image inference
    without test-time augmentation (which averages semantic scores only)."""
    test = "MODEL.MASK_FORMER.TEST"
    architecture = checker.get("MODEL.META_ARCHITECTURE")
    for key in ("PANOPTIC_ON", "INSTANCE_ON"):
        if architecture not in MASK_FORMER_ARCHITECTURES:
            checker.check(
                f"{test}.{key}",
                lambda v: not v,
                f"must be False for {architecture}: only {list(MASK_FORMER_ARCHITECTURES)} give "
                "panoptic and instance outputs",
            )
        if checker.get("TEST.AUG.ENABLED"):
            checker.check(
                f"{test}.{key}",
                lambda v: not v,
                "must be False with TEST.AUG.ENABLED (test-time augmentation averages semantic "
                "scores only)",
            )
