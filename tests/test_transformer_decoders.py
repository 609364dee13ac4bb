"""Transformer decoders built from configs: output structure, gradients, masking, bad input."""

import math

import pytest
import torch
from conftest import semask_cfg

import semask  # noqa: F401
from semask.modeling.transformer_decoder import (
    TRANSFORMER_DECODER_REGISTRY,
    PositionEmbeddingSine,
    build_transformer_decoder,
)
from semask.modeling.transformer_decoder.mask2former_decoder import head_shared_bias
from semask.modeling.transformer_decoder.query_masks import mask_logits

NUM_CLASSES, QUERIES, HIDDEN, MASK_DIM = 5, 6, 32, 16


def build(name, in_channels=HIDDEN, pre_norm=False, dec_layers=4):
    cfg = semask_cfg()
    cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME = name
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = NUM_CLASSES
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = MASK_DIM
    cfg.MODEL.MASK_FORMER.HIDDEN_DIM = HIDDEN
    cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES = QUERIES
    cfg.MODEL.MASK_FORMER.NHEADS = 4
    cfg.MODEL.MASK_FORMER.DIM_FEEDFORWARD = 64
    cfg.MODEL.MASK_FORMER.DEC_LAYERS = dec_layers
    cfg.MODEL.MASK_FORMER.ENC_LAYERS = 1
    cfg.MODEL.MASK_FORMER.DROPOUT = 0.0
    cfg.MODEL.MASK_FORMER.PRE_NORM = pre_norm
    torch.manual_seed(0)
    return build_transformer_decoder(cfg, in_channels, mask_classification=True)


def multi_scale(batch, channels=HIDDEN):
    gen = torch.Generator().manual_seed(2)
    levels = [
        torch.randn(batch, channels, h, w, generator=gen) for h, w in [(2, 3), (4, 5), (7, 9)]
    ]
    return levels, torch.randn(batch, MASK_DIM, 14, 18, generator=gen)


def total_loss(out):
    predictions = [out] + out["aux_outputs"]
    return sum(
        p["pred_logits"].square().mean() + p["pred_masks"].square().mean() for p in predictions
    )


def assert_every_parameter_trains(module, zero_at_init=()):
    """Every parameter is in the graph; all but ``zero_at_init`` get a non-zero gradient."""
    assert [n for n, p in module.named_parameters() if p.grad is None] == []
    zero = [n for n, p in module.named_parameters() if not p.grad.any()]
    assert sorted(zero) == sorted(zero_at_init)


@pytest.mark.parametrize(
    "name", ["MultiScaleMaskedTransformerDecoder", "StandardTransformerDecoder"]
)
def test_registered_under_official_name(name):
    assert TRANSFORMER_DECODER_REGISTRY.get(name).__name__ == name


def test_mask2former_eval_makes_attention_masks_from_resized_features():
    """Eval skips the earlier layers' full-size masks (attention masks from the resized mask
    features instead): the same final prediction as training mode computes, aux logits kept."""
    decoder = build("MultiScaleMaskedTransformerDecoder", in_channels=24)
    x, mask_features = multi_scale(2, channels=24)
    with torch.no_grad():
        trained_way = decoder.train()(x, mask_features)
        inferred = decoder.eval()(x, mask_features)
    for key in ("pred_logits", "pred_masks"):
        torch.testing.assert_close(inferred[key], trained_way[key], rtol=1e-5, atol=1e-5)
    assert [sorted(aux) for aux in inferred["aux_outputs"]] == [["pred_logits"]] * 3
    for aux, reference in zip(inferred["aux_outputs"], trained_way["aux_outputs"]):
        torch.testing.assert_close(aux["pred_logits"], reference["pred_logits"])


@pytest.mark.parametrize("pre_norm", [False, True])
def test_mask2former_outputs_and_gradients(pre_norm):
    decoder = build("MultiScaleMaskedTransformerDecoder", in_channels=24, pre_norm=pre_norm)
    x, mask_features = multi_scale(2, channels=24)
    out = decoder(x, mask_features)
    assert out["pred_logits"].shape == (2, QUERIES, NUM_CLASSES + 1)
    assert out["pred_masks"].shape == (2, QUERIES, 14, 18)
    # DEC_LAYERS counts the prediction from the learnable queries: 3 layers, 3 aux outputs
    assert len(decoder.transformer_cross_attention_layers) == 3
    assert len(out["aux_outputs"]) == 3
    for aux in out["aux_outputs"]:
        assert aux["pred_logits"].shape == out["pred_logits"].shape
        assert aux["pred_masks"].shape == out["pred_masks"].shape
    loss = total_loss(out)
    assert torch.isfinite(loss)
    loss.backward()
    assert_every_parameter_trains(decoder)


def test_mask2former_attention_mask_follows_predicted_masks():
    """With mask features that push every query's mask below 0.5 everywhere, each query would
    attend to nothing; the decoder then lets it attend everywhere, so outputs stay finite."""
    decoder = build("MultiScaleMaskedTransformerDecoder").eval()
    x, _ = multi_scale(1)
    with torch.no_grad():
        decoder.mask_embed.layers[-1].weight.zero_()
        decoder.mask_embed.layers[-1].bias.fill_(-1.0)
        out = decoder(x, torch.ones(1, MASK_DIM, 14, 18))
    assert torch.isfinite(out["pred_logits"]).all()
    mask_features = torch.ones(1, MASK_DIM, 14, 18)
    attention = decoder.features_for_attention(mask_features, [(2, 3)] * 3)
    assert [None if a is None else a.shape[-2:] for a in attention] == [(2, 3)] * 3 + [None]
    _, _, attn_mask = decoder.forward_prediction_heads(
        decoder.query_feat.weight.unsqueeze(1), attention[0]
    )
    assert attn_mask.shape == (1, QUERIES, 6) and attn_mask.all()


def test_mask_logits_of_all_predictions_from_one_product_equal_each_its_own():
    gen = torch.Generator().manual_seed(3)
    embeddings = [torch.randn(2, QUERIES, MASK_DIM, generator=gen) for _ in range(3)]
    embeddings = [e.requires_grad_(True) for e in embeddings]
    features = torch.randn(2, MASK_DIM, 5, 7, generator=gen, requires_grad=True)
    masks = mask_logits(embeddings, features)
    expected = [torch.einsum("bqc,bchw->bqhw", e, features) for e in embeddings]
    for mask, reference in zip(masks, expected):
        torch.testing.assert_close(mask, reference)
    weights = [torch.randn(m.shape, generator=gen) for m in masks]
    grads = torch.autograd.grad(sum((m * w).sum() for m, w in zip(masks, weights)), features)
    reference = torch.autograd.grad(sum((m * w).sum() for m, w in zip(expected, weights)), features)
    torch.testing.assert_close(grads[0], reference[0])


def test_mask2former_trains_every_prediction_mask_and_infers_only_the_last():
    decoder = build("MultiScaleMaskedTransformerDecoder")
    x, mask_features = multi_scale(1)
    trained = decoder.train()(x, mask_features)
    assert all(a["pred_masks"].shape == trained["pred_masks"].shape for a in trained["aux_outputs"])
    with torch.no_grad():
        inferred = decoder.eval()(x, mask_features)
    assert all("pred_masks" not in a for a in inferred["aux_outputs"])
    assert inferred["pred_masks"].shape == trained["pred_masks"].shape


class PlantedEmbedding(torch.nn.Module):
    """Stands in for ``mask_embed``: query q's mask embedding is the one-hot vector of channel q,
    so its mask logits are channel q of the mask features."""

    def forward(self, decoded):
        one_hot = torch.eye(QUERIES, MASK_DIM)
        return one_hot.expand(decoded.shape[0], -1, -1)


def test_mask2former_attention_mask_is_planted_mask_below_one_half():
    """Mask logits constant on 2 x 2 blocks, downsampled 2x (bilinear: the block values exactly):
    query q of image b may not attend where sigmoid(block) < 0.5, for every head."""
    decoder = build("MultiScaleMaskedTransformerDecoder").eval()
    decoder.mask_embed = PlantedEmbedding()
    gen = torch.Generator().manual_seed(4)
    blocks = torch.randn(2, MASK_DIM, 7, 9, generator=gen)
    blocks = blocks + 0.1 * blocks.sign()  # no logit near 0
    mask_features = blocks.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # 14 x 18
    output = torch.zeros(QUERIES, 2, HIDDEN)
    with torch.no_grad():
        attention = decoder.features_for_attention(mask_features, [(7, 9)] * 3)[0]
        _, embedding, attn_mask = decoder.forward_prediction_heads(output, attention)
        (masks,) = mask_logits([embedding], mask_features)
    torch.testing.assert_close(masks, mask_features[:, :QUERIES])
    expected = (blocks[:, :QUERIES].sigmoid() < 0.5).flatten(2)  # [2, Q, 63]
    assert 0 < int(expected.sum()) < expected.numel()
    assert torch.equal(attn_mask, expected)


@pytest.mark.parametrize("batch", [1, 2])
def test_head_shared_bias_is_the_boolean_mask_for_every_head(batch):
    gen = torch.Generator().manual_seed(5)
    mask = torch.rand(batch, QUERIES, 11, generator=gen) < 0.5
    heads = 3
    bias = head_shared_bias(mask, heads, torch.float64)
    assert bias.shape == (batch * heads, QUERIES, 11) and bias.dtype == torch.float64
    for b in range(batch):
        for h in range(heads):
            assert torch.equal(bias[b * heads + h].isneginf(), mask[b])
            assert torch.equal(bias[b * heads + h][~mask[b]], torch.zeros(int((~mask[b]).sum())))
    if batch == 1:  # one image: the heads share one map
        assert bias.stride(0) == 0


def test_mask2former_bad_input():
    decoder = build("MultiScaleMaskedTransformerDecoder")
    x, mask_features = multi_scale(1)
    with pytest.raises(ValueError, match="expects 3 feature levels, got 2"):
        decoder(x[:2], mask_features)
    with pytest.raises(ValueError, match="DEC_LAYERS must be >= 1"):
        build("MultiScaleMaskedTransformerDecoder", dec_layers=0)


def test_mask2former_single_pixel_levels():
    decoder = build("MultiScaleMaskedTransformerDecoder").eval()
    x = [torch.randn(1, HIDDEN, 1, 1) for _ in range(3)]
    out = decoder(x, torch.randn(1, MASK_DIM, 4, 4))
    assert out["pred_masks"].shape == (1, QUERIES, 4, 4) and torch.isfinite(out["pred_masks"]).all()


@pytest.mark.parametrize("pre_norm", [False, True])
def test_maskformer_outputs_and_gradients(pre_norm):
    decoder = build("StandardTransformerDecoder", in_channels=24, pre_norm=pre_norm, dec_layers=3)
    x = torch.randn(2, 24, 3, 4)
    mask_features = torch.randn(2, MASK_DIM, 12, 16)
    out = decoder(x, mask_features)
    assert out["pred_logits"].shape == (2, QUERIES, NUM_CLASSES + 1)
    assert out["pred_masks"].shape == (2, QUERIES, 12, 16)
    assert len(out["aux_outputs"]) == 2
    assert (decoder.transformer.encoder.norm is not None) == pre_norm
    total_loss(out).backward()
    # DETR's first decoder layer starts from all-zero targets: its self-attention reads only
    # zero-initialised biases, so at step 0 these weights get a zero (but defined) gradient
    first = "transformer.decoder.layers.0."
    zero_at_init = [first + "self_attn.in_proj_weight", first + "self_attn.out_proj.weight"]
    zero_at_init.append(first + ("norm2.weight" if pre_norm else "norm1.weight"))
    if pre_norm:
        zero_at_init.append(first + "norm1.weight")
    assert_every_parameter_trains(decoder, zero_at_init)


def test_position_encoding_values():
    pos = PositionEmbeddingSine(4, normalize=True)(torch.zeros(1, 3, 2, 4))
    assert pos.shape == (1, 8, 2, 4)
    # channel 0 is sin of the normalised row coordinate (rows 1..H scaled to 2*pi)
    rows = torch.tensor([1.0, 2.0]) / 2 * 2 * torch.pi
    torch.testing.assert_close(pos[0, 0, :, 0], rows.sin(), atol=1e-5, rtol=1e-5)
    cols = torch.tensor([1.0, 2.0, 3.0, 4.0]) / 4 * 2 * torch.pi
    torch.testing.assert_close(pos[0, 5, 0, :], cols.cos(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_position_encoding_equals_the_per_pixel_formula(normalize):
    feats, temperature = 6, 50.0
    encoder = PositionEmbeddingSine(feats, temperature=temperature, normalize=normalize)
    pos = encoder(torch.zeros(2, 5, 3, 7))
    assert pos.shape == (2, 2 * feats, 3, 7)
    for y in range(3):
        for x in range(7):
            coords = []
            for value, length in ((y + 1.0, 3), (x + 1.0, 7)):
                coords.append(value / (length + 1e-6) * 2 * math.pi if normalize else value)
            expected = []
            for coord in coords:
                for i in range(feats):
                    angle = coord / temperature ** (2 * (i // 2) / feats)
                    expected.append(math.sin(angle) if i % 2 == 0 else math.cos(angle))
            expected = torch.tensor(expected)
            for image in range(2):
                torch.testing.assert_close(pos[image, :, y, x], expected, atol=1e-5, rtol=1e-5)
