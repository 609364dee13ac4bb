"""Export (torch.export and ONNX Runtime) of every model family reproduces eager ``sem_seg``."""

import onnx
import pytest
import torch
from conftest import REPO_ROOT
from detectron2.modeling import build_model

from semask.engine import build_cfg
from semask.export import (
    OPSET,
    ExportedSegmenter,
    SemanticScores,
    check_image,
    example_image,
    export_onnx,
    export_program,
    relative_error,
)
from semask.modeling.pixel_decoder.dcn import ModulatedDeformConv

TOLERANCE = 1e-4
HEIGHT, WIDTH = 64, 96
SWIN = {
    "MODEL.SWIN.EMBED_DIM": "16",
    "MODEL.SWIN.DEPTHS": "[1, 1, 1, 1]",
    "MODEL.SWIN.NUM_HEADS": "[1, 1, 2, 2]",
    "MODEL.SWIN.WINDOW_SIZE": "4",
    "MODEL.SWIN.SEM_WINDOW_SIZE": "4",
    "MODEL.SWIN.PRETRAIN_IMG_SIZE": "64",
}
MASK_HEAD = {
    "MODEL.SEM_SEG_HEAD.CONVS_DIM": "32",
    "MODEL.SEM_SEG_HEAD.MASK_DIM": "32",
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS": "1",
    "MODEL.MASK_FORMER.HIDDEN_DIM": "32",
    "MODEL.MASK_FORMER.NHEADS": "2",
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD": "64",
    "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES": "8",
    "MODEL.MASK_FORMER.DEC_LAYERS": "2",
}
FPN_HEAD = {"MODEL.SEM_SEG_HEAD.CONVS_DIM": "32"}
MIT = {
    "MODEL.MIT.EMBED_DIMS": "[16, 16, 32, 32]",
    "MODEL.MIT.NUM_HEADS": "[1, 1, 2, 2]",
    "MODEL.MIT.DEPTHS": "[1, 1, 1, 1]",
    "MODEL.MIT.SEM_WINDOW_SIZE": "4",
}
SWIN_L = "semask_swin_large_IN21k_384_bs16_160k_res640.yaml"
FAMILIES = {
    "mask2former_msdeform": ("quickstart/semask_swin_mask2former_quickstart.yaml", SWIN, MASK_HEAD),
    "mask2former_fapn": (f"ade20k/mask2former/fapn_{SWIN_L}", SWIN, MASK_HEAD),
    "mask2former_msfapn": (f"ade20k/mask2former/msfapn_{SWIN_L}", SWIN, MASK_HEAD),
    "maskformer": (f"ade20k/maskformer/{SWIN_L}", SWIN, MASK_HEAD),
    "fpn_swin": ("ade20k/semantic_fpn/semask_swin_tiny_bs16_80k_res512.yaml", SWIN, FPN_HEAD),
    "fpn_mit": ("ade20k/semantic_fpn/semask_mit_b0_bs16_80k_res512.yaml", MIT, FPN_HEAD),
}  # config under configs/, backbone and head overrides


def tiny_opts(family: str) -> list:
    """KEY VALUE overrides that make ``family``'s config a tiny CPU model of 5 classes."""
    _, backbone, head = FAMILIES[family]
    opts = {**backbone, **head, "MODEL.SEM_SEG_HEAD.NUM_CLASSES": "5", "MODEL.WEIGHTS": ""}
    return [item for pair in {**opts, "MODEL.DEVICE": "cpu"}.items() for item in pair]


def tiny_model(family: str) -> torch.nn.Module:
    """The tiny model of ``family`` in eval mode, its weights perturbed (deformable offsets and
    the zero-initialised SeMask scales become non-zero)."""
    cfg = build_cfg(str(REPO_ROOT / "configs" / FAMILIES[family][0]), tiny_opts(family))
    model = build_model(cfg).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model


def eager_scores(model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        scores = model([{"image": image, "height": HEIGHT, "width": WIDTH}])[0]["sem_seg"]
    assert scores.shape == (5, HEIGHT, WIDTH)
    return scores


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_torch_export_matches_eager(family, tmp_path):
    model = tiny_model(family)
    path = tmp_path / "model.pt2"
    torch.export.save(export_program(model, HEIGHT, WIDTH), str(path))
    image = example_image(HEIGHT, WIDTH, seed=3)
    assert relative_error(ExportedSegmenter(path)(image), eager_scores(model, image)) < TOLERANCE


@pytest.mark.parametrize(
    "family",
    [
        "fpn_mit",
        *(pytest.param(f, marks=pytest.mark.slow) for f in sorted(FAMILIES) if f != "fpn_mit"),
    ],
)
def test_onnx_runtime_matches_eager(family, tmp_path):
    model = tiny_model(family)
    path = export_onnx(model, HEIGHT, WIDTH, tmp_path / "model.onnx")
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version == OPSET
    assert [i.name for i in graph.graph.input] == ["image"]
    image = example_image(HEIGHT, WIDTH, seed=3)
    expected = eager_scores(model, image)
    assert relative_error(ExportedSegmenter(path)(image), expected) < TOLERANCE
    # attention is exported as matmul + softmax; the model's SDPA setting is restored
    assert all(m.use_sdpa for m in model.modules() if hasattr(m, "use_sdpa"))


def test_onnx_deform_conv_equals_torchvision(tmp_path):
    """FaPN's DCNv2 becomes ONNX DeformConv; ONNX Runtime computes torchvision's values with
    offsets of several pixels and non-trivial masks."""
    torch.manual_seed(0)
    dcn = ModulatedDeformConv(8, 6, deformable_groups=2, offset_in_channels=4).eval()
    with torch.no_grad():
        dcn.conv_offset_mask.weight.normal_(0, 0.5)
        dcn.conv_offset_mask.bias.normal_(0, 1.0)
    x, guide = torch.randn(1, 8, 11, 13), torch.randn(1, 4, 11, 13)
    assert dcn.offsets_and_mask(guide)[0].abs().max() > 2
    path = tmp_path / "dcn.onnx"
    torch.onnx.export(dcn, (x, guide), str(path), dynamo=True, opset_version=OPSET)
    graph = onnx.load(str(path))
    assert "DeformConv" in {node.op_type for node in graph.graph.node}
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    out = session.run(None, {names[0]: x.numpy(), names[1]: guide.numpy()})[0]
    with torch.no_grad():
        expected = dcn(x, guide)
    assert relative_error(torch.from_numpy(out), expected) < 1e-5


@pytest.fixture(scope="module")
def exported_files(tmp_path_factory):
    """The tiny MiT Semantic-FPN exported in both formats."""
    directory = tmp_path_factory.mktemp("exported")
    model = tiny_model("fpn_mit")
    pt2 = directory / "model.pt2"
    torch.export.save(export_program(model, HEIGHT, WIDTH), str(pt2))
    return {"pt2": pt2, "onnx": export_onnx(model, HEIGHT, WIDTH, directory / "model.onnx")}


@pytest.mark.parametrize("suffix", ["pt2", "onnx"])
def test_exported_model_refuses_wrong_inputs(exported_files, suffix):
    path = exported_files[suffix]
    segmenter = ExportedSegmenter(path)
    assert segmenter.size == (HEIGHT, WIDTH)
    image = example_image(HEIGHT, WIDTH)
    with pytest.raises(ValueError, match=rf"{path}: input must be uint8 \[3, H, W\], got dtype"):
        segmenter(image.float())
    with pytest.raises(ValueError, match=r"got shape \[1, 3, 64, 96\]"):
        segmenter(image[None])
    with pytest.raises(ValueError, match=r"exported for H x W = 64 x 96 \(fixed\), got .* 64 x 80"):
        segmenter(image[:, :, :80])
    assert segmenter(image.numpy()).shape == (5, HEIGHT, WIDTH)


def test_exported_program_itself_rejects_wrong_shape(exported_files):
    """Without the checking wrapper, the program's own guard refuses another size."""
    module = torch.export.load(str(exported_files["pt2"])).module()
    with pytest.raises((RuntimeError, AssertionError), match="64|96"):
        module(example_image(HEIGHT, WIDTH + 32))


def test_wrapper_and_checker_messages():
    with pytest.raises(ValueError, match=r"SemanticScores: input must be uint8 .* dtype float32"):
        SemanticScores(torch.nn.Identity())(torch.zeros(3, 8, 8))
    check_image(torch.zeros(3, 5, 7, dtype=torch.uint8), (5, 7))
    with pytest.raises(ValueError, match=r"the exported model: input .* got shape \[4, 5, 7\]"):
        check_image(torch.zeros(4, 5, 7, dtype=torch.uint8))


def test_segmenter_refuses_missing_and_unknown_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.onnx does not exist"):
        ExportedSegmenter(tmp_path / "absent.onnx")
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"model.bin: suffix must be .onnx or .pt2"):
        ExportedSegmenter(tmp_path / "model.bin")


def test_traceable_padding_equals_detectron2s():
    """normalize_and_pad pads with Python integers (traceable) exactly as ImageList.from_tensors."""
    from detectron2.structures import ImageList

    from semask.modeling.meta_arch.inference import normalize_and_pad

    mean, std = torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1), torch.tensor([2.0, 3.0, 4.0])
    inputs = [{"image": example_image(h, w, seed=h)} for h, w in [(33, 70), (64, 31), (5, 7)]]
    for divisibility in (0, 32):
        ours = normalize_and_pad(inputs, mean, std.view(3, 1, 1), divisibility)
        theirs = ImageList.from_tensors(
            [(x["image"].float() - mean) / std.view(3, 1, 1) for x in inputs], divisibility
        )
        assert ours.image_sizes == theirs.image_sizes == [(33, 70), (64, 31), (5, 7)]
        assert torch.equal(ours.tensor, theirs.tensor)
    assert ours.tensor.shape == (3, 3, 64, 96)
