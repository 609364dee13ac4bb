"""BranchMaskFormerHead against the official fixtures (``tests/fixtures/mask2former``), and its
behaviour on bad input."""

import json

import pytest
import torch
from conftest import semask_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

import semask  # noqa: F401

PREFIX = "sem_seg_head."
MODELS = ["micro_msdeform", "micro_msfapn"]


def micro_input_shape(priors=True, embed_dim=24, num_classes=19):
    shape = {f"res{i}": ShapeSpec(embed_dim * 2 ** (i - 2), stride=2**i) for i in range(2, 6)}
    if priors:
        shape.update({f"prior_res{i}": ShapeSpec(num_classes, stride=2**i) for i in range(2, 6)})
    return shape


def build_head(reference_dir, model, return_prior=True):
    cfg = semask_cfg()
    cfg.merge_from_file(str(reference_dir / f"{model}_config.yaml"))
    cfg.MODEL.SEMASK.RETURN_PRIOR = return_prior
    shape = micro_input_shape(
        embed_dim=cfg.MODEL.SWIN.EMBED_DIM, num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    )
    return SEM_SEG_HEADS_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.NAME)(cfg, shape)


def head_state(reference_dir, model):
    state = torch.load(reference_dir / f"{model}.pth")
    return {k[len(PREFIX) :]: v for k, v in state.items() if k.startswith(PREFIX)}


def relative_error(actual, expected):
    return ((actual - expected).norm() / expected.norm()).item()


@pytest.mark.parametrize("model", MODELS)
def test_parameter_names_and_shapes_equal_the_official(reference_dir, model):
    keys = json.loads((reference_dir / f"{model}_keys.json").read_text())
    official = {k[len(PREFIX) :]: shape for k, shape, _ in keys["keys"] if k.startswith(PREFIX)}
    ours = {k: list(v.shape) for k, v in build_head(reference_dir, model).state_dict().items()}
    assert ours == official


@pytest.mark.parametrize("model", MODELS)
def test_reproduces_the_official_outputs(reference_dir, model):
    head = build_head(reference_dir, model).eval()
    head.load_state_dict(head_state(reference_dir, model), strict=True)
    outputs = torch.load(reference_dir / f"{model}_outputs.pt")
    features = dict(outputs["features"])
    features.update({f"prior_{k}": v for k, v in outputs["cls_outputs"].items()})
    with torch.no_grad():
        predictions = head(features)
    aux_logits = torch.stack([aux["pred_logits"] for aux in predictions["aux_outputs"]])
    errors = {
        "pred_logits": relative_error(predictions["pred_logits"], outputs["pred_logits"]),
        "pred_masks": relative_error(predictions["pred_masks"], outputs["pred_masks"]),
        "aux_pred_logits": relative_error(aux_logits, outputs["aux_pred_logits"]),
        "sem_head_pred": relative_error(predictions["sem_pred"], outputs["sem_head_pred"]),
    }
    assert max(errors.values()) <= 1e-4, errors


def test_inference_skips_the_semantic_decoder_unless_priors_are_returned(reference_dir):
    """Without RETURN_PRIOR the eval head gives the same predictions and no ``sem_pred``;
    training always gives the stride-4 ``prior_sum`` that loss_cate resizes."""
    outputs = torch.load(reference_dir / "micro_msdeform_outputs.pt")
    features = dict(outputs["features"])
    features.update({f"prior_{k}": v for k, v in outputs["cls_outputs"].items()})
    state = head_state(reference_dir, "micro_msdeform")
    heads = {}
    for return_prior in (True, False):
        heads[return_prior] = build_head(reference_dir, "micro_msdeform", return_prior).eval()
        heads[return_prior].load_state_dict(state, strict=True)
    with torch.no_grad():
        with_prior, without = heads[True](features), heads[False](features)
    assert "sem_pred" in with_prior and "sem_pred" not in without
    assert torch.equal(with_prior["pred_masks"], without["pred_masks"])
    assert torch.equal(with_prior["pred_logits"], without["pred_logits"])
    trained = heads[False].train()(features)
    assert "sem_pred" not in trained
    assert (
        tuple(4 * s for s in trained["prior_sum"].shape[-2:]) == with_prior["sem_pred"].shape[-2:]
    )


def test_msfapn_keeps_the_shared_group_norm_tied(reference_dir):
    keys = json.loads((reference_dir / "micro_msfapn_keys.json").read_text())
    head = build_head(reference_dir, "micro_msfapn")
    state = head.state_dict()
    for group in keys["tied_keys"]:
        names = [k[len(PREFIX) :] for k in group]
        assert all(name in state for name in names)
        assert len({state[name].data_ptr() for name in names}) == 1
    decoder = head.pixel_decoder
    assert decoder.align_1.offset.norm is decoder.layer_1.norm


def tiny_cfg(
    transformer_in_feature="multi_scale_pixel_decoder", decoder="MultiScaleMaskedTransformerDecoder"
):
    cfg = semask_cfg()
    head = cfg.MODEL.SEM_SEG_HEAD
    head.NAME = "BranchMaskFormerHead"
    head.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    head.PIXEL_DECODER_NAME = "MSDeformAttnPixelDecoder"
    head.NUM_CLASSES = 19
    head.CONVS_DIM = head.MASK_DIM = 64
    head.NORM = "GN"
    head.TRANSFORMER_ENC_LAYERS = 1
    cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME = decoder
    cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE = transformer_in_feature
    cfg.MODEL.MASK_FORMER.HIDDEN_DIM = 64
    cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES = 4
    cfg.MODEL.MASK_FORMER.DIM_FEEDFORWARD = 64
    cfg.MODEL.MASK_FORMER.DEC_LAYERS = 2
    return cfg


def tiny_features(priors=True):
    features = {
        f"res{i}": torch.randn(1, 24 * 2 ** (i - 2), 64 // 2**i, 96 // 2**i) for i in range(2, 6)
    }
    if priors:
        features.update(
            {f"prior_res{i}": torch.randn(1, 19, 64 // 2**i, 96 // 2**i) for i in range(2, 6)}
        )
    return features


def test_without_priors_there_is_no_semantic_prediction():
    head = SEM_SEG_HEADS_REGISTRY.get("BranchMaskFormerHead")(tiny_cfg(), micro_input_shape(False))
    out = head(tiny_features(priors=False))
    assert "sem_pred" not in out and out["pred_masks"].shape == (1, 4, 16, 24)


def test_maskformer_decoder_on_the_encoder_output():
    cfg = tiny_cfg("transformer_encoder", "StandardTransformerDecoder")
    head = SEM_SEG_HEADS_REGISTRY.get("BranchMaskFormerHead")(cfg, micro_input_shape())
    out = head(tiny_features())
    assert out["pred_logits"].shape == (1, 4, 20)
    assert out["prior_sum"].shape == (1, 19, 16, 24)


def test_bad_configs_and_inputs_are_reported():
    build = SEM_SEG_HEADS_REGISTRY.get("BranchMaskFormerHead")
    with pytest.raises(ValueError, match="TRANSFORMER_IN_FEATURE='res9'"):
        build(tiny_cfg("res9"), micro_input_shape())
    cfg = tiny_cfg("transformer_encoder", "StandardTransformerDecoder")
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = "BasePixelDecoder"
    with pytest.raises(ValueError, match="has none"):
        build(cfg, micro_input_shape())(tiny_features())
    cfg = tiny_cfg()
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res3", "res4", "res6"]
    with pytest.raises(ValueError, match=r"IN_FEATURES: \['res6'\]"):
        build(cfg, micro_input_shape())
    head = build(tiny_cfg(), micro_input_shape())
    features = tiny_features()
    del features["prior_res3"]
    with pytest.raises(KeyError, match="prior_res3"):
        head(features)


def test_bf16_autocast_is_close_to_float32():
    """bf16 keeps 8 significant bits (relative rounding up to 2**-8 = 0.4%); the head under bf16
    autocast stays within 2% (relative norm error; measured 0.35-0.6%) of a float32 run on the same
    bf16-rounded features, for the final prediction, every layer's class logits and the prior."""
    cfg = tiny_cfg()
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = "MSDeformAttnPixelFANDecoder"
    cfg.MODEL.SEMASK.RETURN_PRIOR = True
    torch.manual_seed(0)  # the bound holds for typical weights; a rare draw flips attention masks
    head = SEM_SEG_HEADS_REGISTRY.get("BranchMaskFormerHead")(cfg, micro_input_shape()).eval()
    features = {k: v.bfloat16() for k, v in tiny_features().items()}
    with torch.no_grad():
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            out = head(features)
        expected = head({k: v.float() for k, v in features.items()})
    for key in ("pred_logits", "pred_masks"):
        assert relative_error(out[key].float(), expected[key]) < 2e-2, key
    for actual, reference in zip(out["aux_outputs"], expected["aux_outputs"]):
        assert relative_error(actual["pred_logits"].float(), reference["pred_logits"]) < 2e-2
    assert relative_error(out["sem_pred"].float(), expected["sem_pred"]) < 2e-2
