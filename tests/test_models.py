"""Models: parameter counts equal the published ones, shapes, float64, bad names."""

import pytest
import torch
from conftest import bottleneck_runs

from densenet.models import MODEL_NAMES, build_model, count_params

# ../shared/references/README.md (paper Table 2 counts; 16-channel stem for plain DenseNets).
PUBLISHED_PARAMS = {
    "densenet40-k12": 1019722,
    "densenet100-k12": 6979642,
    "densenet100-k24": 27249082,
    "densenet-bc100-k12": 769162,
    "densenet-bc250-k24": 15324406,
    "densenet-bc190-k40": 25624430,
}
# No published count: pinned so that an accidental architecture change is noticed.
PINNED_PARAMS = {"densenet-bc40-k12": 176122, "densenet-bc10-k12": 20902, "vgg16-bn": 14724042}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_param_count(name):
    expected = {**PUBLISHED_PARAMS, **PINNED_PARAMS}[name]
    assert count_params(build_model(name)) == expected


def test_lua_stem_count():
    # The Lua code and bamos use a 2k-channel stem for every DenseNet.
    assert count_params(build_model("densenet40-k12", stem="lua")) == 1059298
    assert count_params(build_model("densenet-bc100-k12", stem="lua")) == 769162


def test_cifar100_head():
    m = build_model("densenet-bc40-k12", num_classes=100)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 100)


@pytest.mark.parametrize("name", ["densenet-bc40-k12", "densenet40-k12", "vgg16-bn"])
def test_forward_shape_and_float64(name):
    m = build_model(name).double()
    out = m(torch.randn(3, 3, 32, 32, dtype=torch.float64))
    assert out.shape == (3, 10) and out.dtype == torch.float64
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_conv_bias_and_dropout_options():
    plain = build_model("densenet-bc40-k12")
    biased = build_model("densenet-bc40-k12", bias=True)
    convs = [m for m in biased.modules() if isinstance(m, torch.nn.Conv2d)]
    assert count_params(biased) == count_params(plain) + sum(c.out_channels for c in convs)
    m = build_model("densenet-bc40-k12", dropout=0.2).train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    a = m(x)
    torch.manual_seed(1)
    assert not torch.equal(a, m(x))  # dropout active in training mode


def test_he_fan_out_init():
    torch.manual_seed(0)
    m = build_model("densenet40-k12")
    w = m.features[0].conv2.weight  # 3x3 conv to k=12 channels
    assert w.std().item() == pytest.approx((2.0 / (9 * 12)) ** 0.5, rel=0.1)


def test_efficient_mode_same_gradients():
    torch.manual_seed(0)
    m = build_model("densenet-bc40-k12").double()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    with bottleneck_runs(m) as normal:
        m(x).sum().backward()
    ref = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    m.set_efficient(True)
    with bottleneck_runs(m) as efficient:
        m(x).sum().backward()
    # Same gradients prove nothing if set_efficient did not take: backward must have run every
    # bottleneck a second time (the checkpoint's recomputation).
    assert len(normal) == 18 and set(normal.values()) == {1}, normal
    assert efficient == dict.fromkeys(normal, 2), efficient
    for r, p in zip(ref, m.parameters()):
        assert torch.allclose(r, p.grad, rtol=1e-10, atol=1e-12)


def test_unknown_model_lists_names():
    with pytest.raises(ValueError, match="densenet-bc100-k12"):
        build_model("resnet18")
