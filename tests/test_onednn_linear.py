"""oneDNN linear layers (``MODEL.CPU_LINEAR``): F.linear's values and gradients, the places they
fall back to F.linear, and the models that use them."""

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO_ROOT
from detectron2.modeling import build_model
from test_export import FAMILIES, tiny_opts
from torch import nn

from semask.engine import build_cfg
from semask.modeling import onednn_linear
from semask.modeling.meta_arch.inference import semantic_inference
from semask.modeling.onednn_linear import (
    OneDNNLinear,
    linear_activation,
    matmul,
    onednn_available,
    route_linears,
)

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this torch has no oneDNN linear")


@pytest.fixture
def onednn_calls(monkeypatch):
    """Counts the products computed by oneDNN."""
    calls = []
    product = onednn_linear._onednn_product

    def counted(*args):
        calls.append(args[0].shape)
        return product(*args)

    monkeypatch.setattr(onednn_linear, "_onednn_product", counted)
    return calls


def layer(in_features=24, out_features=40, bias=True, seed=0):
    torch.manual_seed(seed)
    return route_linears(nn.Linear(in_features, out_features, bias=bias), "onednn")


INPUTS = {
    "2-D": lambda: torch.randn(37, 24),
    "3-D": lambda: torch.randn(3, 11, 24),
    "4-D, not contiguous": lambda: torch.randn(2, 24, 5, 7).permute(0, 2, 3, 1),
    "no rows": lambda: torch.randn(2, 0, 24),
}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_values_equal_f_linear(name, bias, onednn_calls):
    linear, x = layer(bias=bias), INPUTS[name]()
    with torch.no_grad():
        out = linear(x)
    assert onednn_calls, "the oneDNN product was not used"
    assert out.shape == (*x.shape[:-1], 40)
    torch.testing.assert_close(out, F.linear(x, linear.weight, linear.bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("frozen", [(), ("weight",), ("input",)])
def test_gradients_equal_f_linear(bias, frozen, onednn_calls):
    linear = layer(bias=bias)
    x = torch.randn(4, 9, 24, requires_grad="input" not in frozen)
    linear.weight.requires_grad_("weight" not in frozen)
    grad = torch.randn(4, 9, 40)
    tensors = [t for t in (x, linear.weight, linear.bias) if t is not None and t.requires_grad]
    ours = torch.autograd.grad(linear(x), tensors, grad)
    # the input's gradient is a second oneDNN product
    assert len(onednn_calls) == (1 if "input" in frozen else 2)
    expected = torch.autograd.grad(F.linear(x, linear.weight, linear.bias), tensors, grad)
    for actual, wanted in zip(ours, expected):
        torch.testing.assert_close(actual, wanted, rtol=1e-5, atol=1e-5)


def test_a_training_step_moves_the_weights_as_f_linear_does():
    ours, plain = layer(), nn.Linear(24, 40)
    plain.load_state_dict(ours.state_dict())
    x, target = torch.randn(16, 24), torch.randn(16, 40)
    for model in (ours, plain):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        F.mse_loss(model(x), target).backward()
        optimizer.step()
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, rtol=1e-5, atol=1e-6)


def test_float64_and_cpu_autocast_take_f_linear(onednn_calls):
    linear = layer()
    x = torch.randn(5, 24)
    double = linear.double()(x.double())
    assert torch.equal(double, F.linear(x.double(), linear.weight, linear.bias))
    linear.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear(x).dtype == torch.bfloat16
    assert not onednn_calls


def test_an_export_traces_the_standard_linear():
    program = torch.export.export(layer(), (torch.randn(5, 24),), strict=False)
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "aten.linear.default" in targets
    assert not any("mkldnn" in target for target in targets)


def test_route_linears_turns_only_plain_linears_and_keeps_their_parameters():
    class Subclassed(nn.Linear):
        pass

    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), Subclassed(6, 2))
    parameters = list(model.parameters())
    keys = list(model.state_dict())
    assert route_linears(model, "onednn") is model
    assert type(model[0]) is OneDNNLinear and type(model[2]) is Subclassed
    assert list(model.parameters()) == parameters and list(model.state_dict()) == keys
    assert type(route_linears(nn.Linear(2, 2), "torch")) is nn.Linear


def test_an_unknown_backend_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"MODEL.CPU_LINEAR must be one of \['onednn', 'torch'\]"):
        route_linears(nn.Linear(2, 2), "mkl")


def test_matmul_equals_mm_and_uses_onednn_only_without_gradient(onednn_calls):
    a, b = torch.randn(7, 5).t(), torch.randn(7, 9)  # a strided [5, 7]
    expected = a.mm(b)
    torch.testing.assert_close(matmul(a, b, "onednn"), expected, rtol=1e-5, atol=1e-5)
    assert len(onednn_calls) == 1
    assert torch.equal(matmul(a, b, "torch"), expected)
    a.requires_grad_()
    matmul(a, b, "onednn").sum().backward()
    torch.testing.assert_close(a.grad, b.sum(1).expand(5, 7))
    assert len(onednn_calls) == 1


@pytest.mark.parametrize("activation, function", [("gelu", F.gelu), ("relu", F.relu)])
def test_linear_activation_fuses_the_activation_without_autograd(
    activation, function, onednn_calls
):
    linear, x = layer(), torch.randn(3, 13, 24)
    expected = function(F.linear(x, linear.weight, linear.bias))
    with torch.no_grad():
        fused = linear_activation(linear, x, activation)
    assert not onednn_calls  # one fused product, not the layer's own
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)
    x.requires_grad_()
    trained = linear_activation(linear, x, activation)
    assert len(onednn_calls) == 1  # with autograd: the layer, then the activation
    (grad,) = torch.autograd.grad(trained.sum(), x)
    (wanted,) = torch.autograd.grad(function(F.linear(x, linear.weight, linear.bias)).sum(), x)
    torch.testing.assert_close(grad, wanted, rtol=1e-5, atol=1e-5)
    plain = nn.Linear(24, 40)
    with torch.no_grad():
        torch.testing.assert_close(linear_activation(plain, x, activation), function(plain(x)))


def test_semantic_inference_scores_as_with_torch_mm():
    generator = torch.Generator().manual_seed(0)
    mask_cls, mask_pred = torch.randn(6, 5, generator=generator), torch.randn(
        6, 37, 29, generator=generator
    )
    with torch.no_grad():
        ours = semantic_inference(mask_cls, mask_pred, band_rows=8, cpu_linear="onednn")
        plain = semantic_inference(mask_cls, mask_pred, band_rows=8, cpu_linear="torch")
    torch.testing.assert_close(ours, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        ours, torch.einsum("qk,qhw->khw", mask_cls.softmax(-1)[:, :-1], mask_pred.sigmoid())
    )


@pytest.mark.parametrize("family", ["mask2former_msdeform", "fpn_swin"])
def test_models_score_as_with_f_linear(family):
    scores, kinds = {}, {}
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    for backend in ("onednn", "torch"):
        opts = [*tiny_opts(family), "MODEL.CPU_LINEAR", backend]
        torch.manual_seed(0)
        model = build_model(build_cfg(str(REPO_ROOT / "configs" / FAMILIES[family][0]), opts))
        kinds[backend] = {type(m) for m in model.modules() if isinstance(m, nn.Linear)}
        with torch.no_grad():
            scores[backend] = model.eval()([{"image": image}])[0]["sem_seg"]
    assert OneDNNLinear in kinds["onednn"] and OneDNNLinear not in kinds["torch"]
    torch.testing.assert_close(scores["onednn"], scores["torch"], rtol=1e-4, atol=1e-5)
