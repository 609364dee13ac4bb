"""Semantic layer math, windowing, initialisation and the trainability of the semantic branch."""

import pytest
import torch
import torch.nn.functional as F

from semask.modeling.backbone import D2SeMaskSwinTransformer, SemanticAttention, SemanticLayer

BRANCH = ("gamma", "mlp_res", "mlp_cls_k", "mlp_v")


def attention_by_formula(block: SemanticAttention, t: torch.Tensor) -> torch.Tensor:
    """docs/DESIGN.md section 1, written out (eval mode: no dropout)."""
    s = t @ block.mlp_cls_q.weight.T + block.mlp_cls_q.bias
    kc = t @ block.mlp_cls_k.weight.T + block.mlp_cls_k.bias
    v = t @ block.mlp_v.weight.T + block.mlp_v.bias
    a = torch.softmax(s @ kc.transpose(-2, -1), dim=-1)
    return block.gamma * F.linear(a @ v, block.mlp_res.weight, block.mlp_res.bias) + t


def layer(window_size, num_blocks: int = 1, use_sdpa: bool = True) -> SemanticLayer:
    torch.manual_seed(0)
    module = SemanticLayer(
        dim=16, num_classes=5, num_blocks=num_blocks, window_size=window_size, use_sdpa=use_sdpa
    ).eval()
    for block in module.class_injection:
        block.gamma.data.fill_(0.7)
        torch.nn.init.normal_(block.mlp_res.weight, std=0.3)
    return module


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_semantic_attention_matches_formula(use_sdpa):
    module = layer(None, use_sdpa=use_sdpa)
    block = module.class_injection[0]
    t = torch.randn(2, 30, 16)
    out, cls = block(t)
    torch.testing.assert_close(out, attention_by_formula(block, t))
    torch.testing.assert_close(cls, block.mlp_cls_q(t))


def test_global_layer_normalises_then_attends_and_returns_prior_map():
    module = layer(None)
    x = torch.randn(2, 3 * 4, 16)
    out, prior = module(x, 3, 4)
    t = module.norm1(x)
    torch.testing.assert_close(out, attention_by_formula(module.class_injection[0], t))
    expected_prior = module.class_injection[0].mlp_cls_q(t).transpose(1, 2).reshape(2, 5, 3, 4)
    torch.testing.assert_close(prior, expected_prior)


def test_windowed_layer_attends_within_zero_padded_windows():
    module = layer(4)
    h, w = 6, 9  # padded to 8 x 12: 2 x 3 windows, the last row/column of windows part padding
    x = torch.randn(1, h * w, 16)
    out, prior = module(x, h, w)
    grid = F.pad(module.norm1(x).view(1, h, w, 16), (0, 0, 0, 3, 0, 2))
    block = module.class_injection[0]
    for i in range(2):
        for j in range(3):
            window = grid[:, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].reshape(1, 16, 16)
            expected = attention_by_formula(block, window).view(1, 4, 4, 16)
            rows, cols = slice(4 * i, min(4 * i + 4, h)), slice(4 * j, min(4 * j + 4, w))
            got = out.view(1, h, w, 16)[:, rows, cols]
            torch.testing.assert_close(got, expected[:, : got.shape[1], : got.shape[2]])
    torch.testing.assert_close(
        prior, block.mlp_cls_q(module.norm1(x)).transpose(1, 2).reshape(1, 5, h, w)
    )


def test_blocks_apply_in_sequence_and_prior_comes_from_the_last():
    module = layer(None, num_blocks=2)
    x = torch.randn(1, 12, 16)
    out, prior = module(x, 3, 4)
    first = attention_by_formula(module.class_injection[0], module.norm1(x))
    second = module.class_injection[1]
    torch.testing.assert_close(out, attention_by_formula(second, first))
    torch.testing.assert_close(prior, second.mlp_cls_q(first).transpose(1, 2).reshape(1, 5, 3, 4))


def test_zero_blocks_is_rejected():
    with pytest.raises(ValueError, match="num_blocks >= 1, got 0"):
        SemanticLayer(dim=8, num_classes=3, num_blocks=0, window_size=None)


def test_initialisation_starts_gamma_at_zero_with_nonzero_mlp_res():
    block = SemanticAttention(dim=32, num_classes=7)
    assert block.gamma.item() == 0.0
    assert 0.0 < block.mlp_res.weight.std().item() < 0.05
    x = torch.randn(2, 10, 32)
    torch.testing.assert_close(block.eval()(x)[0], x)  # gamma 0: identity on the normalised tokens


def micro_backbone() -> D2SeMaskSwinTransformer:
    torch.manual_seed(0)
    return D2SeMaskSwinTransformer(
        num_classes=6,
        embed_dim=16,
        depths=(1, 1, 1, 1),
        num_heads=(1, 1, 2, 2),
        window_size=4,
        sem_window_size=4,
        drop_path_rate=0.0,
    )


def branch_grads(model: torch.nn.Module):
    """{(stage, name): max |grad|} for the four semantic-branch parameters of every stage."""
    grads = {}
    for i, stage in enumerate(model.layers):
        block = stage.semantic_layer.class_injection[0]
        for name in BRANCH:
            param = block.gamma if name == "gamma" else getattr(block, name).weight
            grads[(i, name)] = 0.0 if param.grad is None else param.grad.abs().max().item()
    return grads


def train_steps(model: torch.nn.Module, steps: int):
    """AdamW steps on a prior + feature loss; the branch gradients seen at each step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    # 64 x 64: the last stage has 2 x 2 tokens (with one token its attention is constant).
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 6, (2, 16, 16), generator=torch.Generator().manual_seed(2))
    history = []
    for _ in range(steps):
        optimizer.zero_grad()
        out = model(x)
        loss = F.cross_entropy(out["prior_res2"], labels) + out["res5"].square().mean()
        loss.backward()
        history.append(branch_grads(model))
        optimizer.step()
    return history


def test_fresh_model_trains_the_semantic_branch():
    model = micro_backbone().train()
    history = train_steps(model, 4)
    for stage in range(4):
        assert history[0][(stage, "gamma")] > 0, f"stage {stage}: gamma gets no gradient"
        for name in ("mlp_res", "mlp_cls_k", "mlp_v"):
            assert history[-1][(stage, name)] > 0, f"stage {stage}: {name} gets no gradient"
    for stage in model.layers:
        assert stage.semantic_layer.class_injection[0].gamma.item() != 0.0


def test_published_initialisation_never_trains_the_branch():
    """Counter-check: gamma 0 and mlp_res 0 (the published Detectron2 init) freeze the branch."""
    model = micro_backbone().train()
    for stage in model.layers:
        block = stage.semantic_layer.class_injection[0]
        torch.nn.init.zeros_(block.mlp_res.weight)
        torch.nn.init.zeros_(block.mlp_res.bias)
    history = train_steps(model, 3)
    assert all(value == 0.0 for grads in history for value in grads.values())
    for stage in model.layers:
        assert stage.semantic_layer.class_injection[0].gamma.item() == 0.0
