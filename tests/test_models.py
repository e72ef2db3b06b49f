import pytest
import torch

from decoylab import models

SHAPES = {"honey_small_conv": (1, 28, 28), "deepsec_mnist": (1, 28, 28), "nfp_mnist": (1, 28, 28),
          "resnet20": (3, 32, 32), "nfp_cifar10": (3, 32, 32), "mlp": (1, 8, 8),
          "luring_mnist": (1, 28, 28), "luring_vgg": (3, 32, 32), "luring_vgg_wide": (3, 32, 32)}


@pytest.mark.parametrize("name", models.names())
def test_every_model_maps_images_to_logits(name):
    shape = SHAPES[name]
    model = models.build(name, shape, 10, seed=0).eval()
    out = model(torch.rand(4, *shape))
    assert out.shape == (4, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in models.names() if SHAPES[n][1] > 8])
def test_the_channels_last_twin_computes_the_same_logits_and_input_gradients(name):
    """The twin (the CW line search's copy) flattens its features in (H, W, C) order with permuted
    dense weights: the same function to float rounding, and the original net is left as it was."""
    shape = SHAPES[name]
    # In float64: in float32 the two layouts' rounding can flip a near-tie of a max-pool window,
    # which sends that window's gradient to another pixel.
    model = models.build(name, shape, 10, seed=0).eval().double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    twin = models.channels_last_twin(model)
    x = torch.rand(3, *shape, dtype=torch.float64, requires_grad=True)
    out, twin_out = model(x), twin(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(twin_out, out, rtol=1e-9, atol=1e-9)
    (grad,) = torch.autograd.grad(out[:, 0].sum(), x)
    (twin_grad,) = torch.autograd.grad(twin_out[:, 0].sum(), x)
    torch.testing.assert_close(twin_grad, grad, rtol=1e-9, atol=1e-9)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    reads_channels_last = [m.flatten_channels_last for m in twin.modules() if hasattr(m, "feature_shape")]
    assert all(reads_channels_last) and all(not m.flatten_channels_last for m in model.modules()
                                            if hasattr(m, "feature_shape"))


def test_seed_fixes_initialisation():
    a, b = (models.build("nfp_mnist", (1, 28, 28), 10, seed=1) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_resnet20_has_20_weight_layers():
    model = models.build("resnet20", (3, 32, 32), 10)
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 20


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="allowed: honey_small_conv"):
        models.build("vgg", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="cannot take inputs of shape"):
        models.build("nfp_mnist", (1, 8, 8), 10)


@pytest.mark.parametrize("name,shape", [("luring_p_mnist", (1, 28, 28)), ("luring_p_svhn", (3, 32, 32)),
                                        ("luring_p_cifar10", (3, 32, 32))])
def test_components_map_images_to_images_in_the_unit_box(name, shape):
    component = models.build_component(name, shape, seed=0).eval()
    with torch.no_grad():
        out = component(torch.rand(2, *shape))
    assert out.shape == (2, *shape) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_unknown_component_is_named():
    with pytest.raises(ValueError, match="component='unet'"):
        models.build_component("unet", (1, 28, 28))
