"""semask.compat: applies only what the installed libraries lack, and never breaks them."""

import subprocess
import sys
import types

import pytest

from semask import compat


def test_import_semask_works_without_compiled_ops():
    code = (
        "import semask\n"
        "from detectron2 import _C\n"
        "import detectron2.layers, detectron2.modeling\n"
        "from detectron2.projects.point_rend.point_features import point_sample\n"
        "from detectron2.projects.deeplab import add_deeplab_config\n"
        "stand_in = isinstance(_C, semask.compat.MissingCompiledOps)\n"
        "print(type(_C).__name__ if stand_in else 'compiled')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] in ("compiled", "MissingCompiledOps")


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


def test_stand_in_ops_raise_a_clear_error_naming_the_op():
    stand_in = compat.MissingCompiledOps(compat.C_EXTENSION)
    with pytest.raises(compat.MissingCompiledOpError, match=r"detectron2\._C\.nms_rotated"):
        stand_in.nms_rotated(None, None, 0.5)
    assert not hasattr(stand_in, "__file__")  # inspect and pickle must not see fake dunders


def test_environment_report_works_with_the_stand_in():
    from detectron2.utils.collect_env import collect_env_info

    stand_in = compat.MissingCompiledOps(compat.C_EXTENSION)
    assert stand_in.get_compiler_version() == compat.NOT_COMPILED
    assert not stand_in.has_cuda()
    report = collect_env_info()
    assert "detectron2" in report
    from detectron2 import _C

    if isinstance(_C, compat.MissingCompiledOps):
        assert compat.NOT_COMPILED in report


def test_c_stand_in_is_installed_only_when_the_extension_is_missing():
    modules = {}
    missing = {"detectron2": object(), compat.C_EXTENSION: None}
    assert compat.install_c_extension_stand_in(missing.get, modules)
    assert isinstance(modules[compat.C_EXTENSION], compat.MissingCompiledOps)

    modules = {}
    compiled = {"detectron2": object(), compat.C_EXTENSION: object()}
    assert not compat.install_c_extension_stand_in(compiled.get, modules)
    assert modules == {}

    no_detectron2 = {}
    assert not compat.install_c_extension_stand_in(no_detectron2.get, modules)
    assert modules == {}


def test_c_stand_in_keeps_an_already_imported_extension():
    real = types.ModuleType(compat.C_EXTENSION)
    modules = {compat.C_EXTENSION: real}
    assert not compat.install_c_extension_stand_in(lambda name: None, modules)
    assert modules[compat.C_EXTENSION] is real


def test_numpy_aliases_added_only_where_missing():
    old_numpy = types.SimpleNamespace(int="np-int", float="np-float", bool="np-bool")
    assert compat.add_numpy_aliases(old_numpy) == []
    assert (old_numpy.int, old_numpy.float, old_numpy.bool) == ("np-int", "np-float", "np-bool")

    new_numpy = types.SimpleNamespace(float="np-float")
    assert compat.add_numpy_aliases(new_numpy) == ["int", "bool"]
    assert (new_numpy.int, new_numpy.float, new_numpy.bool) == (int, "np-float", bool)


def test_pillow_linear_added_only_where_missing():
    old_pillow = types.SimpleNamespace(LINEAR="linear", BILINEAR="bilinear")
    assert compat.add_pillow_constants(old_pillow) == []
    assert old_pillow.LINEAR == "linear"

    new_pillow = types.SimpleNamespace(BILINEAR="bilinear")
    assert compat.add_pillow_constants(new_pillow) == ["LINEAR"]
    assert new_pillow.LINEAR == "bilinear"


def test_apply_is_idempotent():
    compat.apply()
    assert compat.apply() == {
        "c_extension_stand_in": False,
        "numpy_aliases": [],
        "pillow_constants": [],
        "map_dataset_fallback": False,
    }


def test_map_dataset_falls_back_to_another_sample_when_the_mapper_returns_none():
    from detectron2.data.common import MapDataset

    dataset = MapDataset(list(range(6)), lambda x: None if x == 2 else x)
    assert [dataset[i] for i in range(6)][:2] == [0, 1]
    assert dataset[2] in {0, 1, 3, 4, 5}
