"""Every Semantic-FPN config windows the semantic layers of the stages the SeMask-FPN fork does."""

from typing import List

import pytest
from conftest import REPO_ROOT, semask_cfg

FPN_CONFIGS = sorted(
    p.relative_to(REPO_ROOT / "configs").as_posix()
    for p in (REPO_ROOT / "configs").glob("*/semantic_fpn/semask_*.yaml")
)


def fork_windowed_stages(embed_dim: int, num_classes: int) -> List[int]:
    """The SeMask-FPN (mmseg) backbone's rule: EMBED_DIM 96 or 192 with more than 19 classes
    windows stages 0-1 (2-3 global); any other Swin windows all four stages."""
    if embed_dim in (96, 192) and num_classes > 19:
        return [0, 1]
    return [0, 1, 2, 3]


def test_every_dataset_and_size_is_covered() -> None:
    names = {p.split("/", 1)[0] + "/" + p.rsplit("/", 1)[1].split("_bs")[0] for p in FPN_CONFIGS}
    for dataset in ("ade20k", "cityscapes", "coco_stuff_10k"):
        for size in ("tiny", "small", "base", "large"):
            assert any(n.startswith(f"{dataset}/semask_swin_{size}") for n in names), (
                dataset,
                size,
            )
    assert sum("semask_mit_" in p for p in FPN_CONFIGS) == 6


@pytest.mark.parametrize("name", FPN_CONFIGS)
def test_windowed_stages_follow_the_fork_rule(name: str) -> None:
    cfg = semask_cfg()
    cfg.merge_from_file(str(REPO_ROOT / "configs" / name))
    stages = list(cfg.MODEL.SEMASK.WINDOWED_STAGES)
    if cfg.MODEL.BACKBONE.NAME == "D2SeMaskMiT":
        # No SeMask MiT was published; the project keeps the rule of 150-class Swin T/S/L.
        assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 150
        assert stages == [0, 1], name
        return
    assert cfg.MODEL.BACKBONE.NAME == "D2SeMaskSwinTransformer"
    expected = fork_windowed_stages(cfg.MODEL.SWIN.EMBED_DIM, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
    assert stages == expected, name
