"""detectron2 and semask import in either order, in a fresh interpreter, and `import semask`
patches nothing: numpy and Pillow gain no attribute but submodules, and detectron2's MapDataset is
as detectron2 defines it."""

import subprocess
import sys

import pytest
from conftest import REPO_ROOT

CONFIG = REPO_ROOT / "configs/quickstart/semask_swin_mask2former_quickstart.yaml"
TINY = [
    "MODEL.SWIN.EMBED_DIM", "16", "MODEL.SWIN.DEPTHS", "[1, 1, 1, 1]",
    "MODEL.SWIN.NUM_HEADS", "[1, 1, 2, 2]", "MODEL.SWIN.WINDOW_SIZE", "4",
    "MODEL.SWIN.SEM_WINDOW_SIZE", "4", "MODEL.SWIN.PRETRAIN_IMG_SIZE", "64",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.MASK_DIM", "32",
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", "1", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "5",
    "MODEL.MASK_FORMER.HIDDEN_DIM", "32", "MODEL.MASK_FORMER.NHEADS", "2",
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD", "64", "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8",
    "MODEL.MASK_FORMER.DEC_LAYERS", "2", "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu",
]  # fmt: skip
DETECTRON2_FIRST = """
import numpy, PIL.Image
import detectron2.modeling, detectron2.data
from detectron2.data.common import MapDataset
before = (set(vars(numpy)), set(vars(PIL.Image)), dict(vars(MapDataset)))
import semask
"""
SEMASK_FIRST = """
import numpy, PIL.Image
before = (set(vars(numpy)), set(vars(PIL.Image)), None)
import semask
import detectron2.modeling, detectron2.data
from detectron2.data.common import MapDataset
"""
BUILD_AND_RUN = f"""
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from semask import add_semask_config

after = (set(vars(numpy)), set(vars(PIL.Image)), dict(vars(MapDataset)))
for module, names, added in ((numpy, before[0], after[0]), (PIL.Image, before[1], after[1])):
    assert names <= added, f"import semask removed {{names - added}} from {{module.__name__}}"
    for name in added - names:  # submodules that were imported since are fine
        assert type(getattr(module, name)) is type(numpy), f"import semask set {{module}}.{{name}}"
assert before[2] in (None, after[2]), "import semask changed detectron2's MapDataset"
cfg = get_cfg()
add_semask_config(cfg)
cfg.merge_from_file({str(CONFIG)!r})
cfg.merge_from_list({TINY!r})
model = build_model(cfg).eval()
with torch.no_grad():
    out = model([{{"image": torch.rand(3, 64, 96) * 255, "height": 64, "width": 96}}])
print(type(model).__name__, tuple(out[0]["sem_seg"].shape))
"""


def run_fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def patched_detectron2() -> bool:
    from detectron2 import _C

    return hasattr(_C, "SEMASK_PATCH_LEVEL")


@pytest.mark.parametrize(
    "imports",
    [
        pytest.param(DETECTRON2_FIRST, id="d2-first"),
        pytest.param(SEMASK_FIRST, id="semask-first", marks=pytest.mark.slow),
    ],
)
def test_either_import_order_builds_and_runs_a_semask_model(imports):
    result = run_fresh(imports + BUILD_AND_RUN)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "SeMaskMaskFormer (5, 64, 96)"
    if patched_detectron2():  # the install-time filter; an upstream detectron2 is left as it is
        assert "torch.jit.script" not in result.stderr


def test_import_semask_registers_its_components():
    from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, SEM_SEG_HEADS_REGISTRY

    from semask.modeling.pixel_decoder import PIXEL_DECODER_REGISTRY
    from semask.modeling.transformer_decoder import TRANSFORMER_DECODER_REGISTRY

    expected = {
        BACKBONE_REGISTRY: ["D2SeMaskSwinTransformer", "D2SwinTransformer", "D2SeMaskMiT"],
        SEM_SEG_HEADS_REGISTRY: ["BranchMaskFormerHead"],
        META_ARCH_REGISTRY: ["SeMaskMaskFormer", "SeMaskFPN"],
        PIXEL_DECODER_REGISTRY: [
            "BasePixelDecoder",
            "MSDeformAttnPixelDecoder",
            "PixelFANDecoder",
            "MSDeformAttnPixelFANDecoder",
        ],
        TRANSFORMER_DECODER_REGISTRY: [
            "MultiScaleMaskedTransformerDecoder",
            "StandardTransformerDecoder",
        ],
    }
    for registry, names in expected.items():
        for name in names:
            assert registry.get(name) is not None


def test_a_detectron2_without_its_c_extension_stops_import_semask_saying_what_to_do():
    result = run_fresh("import sys\nsys.modules['detectron2._C'] = None\nimport semask\n")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: import of detectron2._C halted")
    assert "run `make env` (tools/install_detectron2.py)" in last


def test_compiled_op_stand_in_and_environment_report():
    from detectron2 import _C
    from detectron2.utils.collect_env import collect_env_info

    report = collect_env_info()
    assert "detectron2" in report
    if not patched_detectron2():
        pytest.skip("detectron2 has its compiled ops (an upstream build)")
    assert _C.NOT_COMPILED in report
    with pytest.raises(_C.MissingCompiledOpError, match=r"detectron2\._C\.box_iou_rotated"):
        from detectron2.layers.rotated_boxes import pairwise_iou_rotated

        pairwise_iou_rotated(None, None)
