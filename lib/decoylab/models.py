"""The papers' architectures by name. Every model maps (N, C, H, W) images in [0, 1] to logits.

| name              | paper / source                                   | layers |
|-------------------|--------------------------------------------------|--------|
| ``honey_small_conv`` | HoneyModels appendix B, MNIST "Small Conv., 6 layers" | 6 |
| ``resnet20``      | HoneyModels / Attractors CIFAR-10 (He et al. 2016, option A shortcuts) | 20 |
| ``deepsec_mnist`` | Attractors paper's MNIST net: DEEPSEC conv 32-32-64-64, FC 200-200-10, dropout 0.5 | 7 |
| ``nfp_mnist``     | Neural Fingerprinting Table 3                     | 5 |
| ``nfp_cifar10``   | Neural Fingerprinting Table 4                     | 7 |
| ``luring_mnist``  | Luring Table 2 (Madry et al.'s MNIST net): conv 32-64 (5x5), FC 1024 | 4 |
| ``luring_vgg``    | Luring Tables 3-4 (SVHN: 64-128-256, CIFAR-10: 128-256-512 channels by input size) | 9 |
| ``mlp``           | a one-hidden-layer baseline for tests and 8x8 digits | 2 |

Luring's components P map images to images (``COMPONENTS``, ``build_component``): ``luring_p_mnist``
(Table 5), ``luring_p_svhn`` (Table 6), ``luring_p_cifar10`` (Table 7).

Input shape and class count come from the dataset (``data.info(name)``).
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Shape = tuple[int, int, int]


def _feature_shape(features: nn.Module, input_shape: Shape, name: str) -> tuple[int, ...]:
    """Run a dummy input through the conv stack to size the first dense layer."""
    try:
        with torch.no_grad():
            return tuple(features(torch.zeros(1, *input_shape)).shape[1:])
    except RuntimeError as err:
        raise ValueError(f"model {name!r} cannot take inputs of shape {input_shape}: {err}") from err


class _ConvThenDense(nn.Module):
    flatten_channels_last = False  # set by channels_last_twin on a copy, never on a trained net

    def __init__(self, features: nn.Module, head: Callable[[int], nn.Module], input_shape: Shape, name: str):
        super().__init__()
        self.features = features
        self.feature_shape = _feature_shape(features, input_shape, name)
        self.head = head(math.prod(self.feature_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        if self.flatten_channels_last:  # a free view of a channels-last tensor; the weights match this order
            return self.head(features.permute(0, 2, 3, 1).flatten(1))
        return self.head(torch.flatten(features, 1))

    def read_features_channels_last(self) -> None:
        """Flatten the features in (H, W, C) order from now on, the first dense layer's weight
        columns permuted to match, so a channels-last pass needs no layout conversion at the
        flatten (in the backward pass it cost a copy per layer; see ``channels_last_twin``)."""
        first = self.head[0] if isinstance(self.head, nn.Sequential) else self.head
        if self.flatten_channels_last or len(self.feature_shape) != 3 or not isinstance(first, nn.Linear):
            return
        c, h, w = self.feature_shape
        with torch.no_grad():
            first.weight.copy_(first.weight.view(-1, c, h, w).permute(0, 2, 3, 1).reshape(first.weight.shape))
        self.flatten_channels_last = True


def channels_last_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` computing the same function (to float rounding) in channels-last layout,
    the faster one for CPU convolutions and pooling: the CW line search's forward and gradient
    passes run on it (``python -m decoylab.tools.bench attacks``). Every conv-then-dense net inside,
    a defense's composite included, reads its features in channels-last order. The caller passes
    channels-last inputs. Raises what ``copy.deepcopy`` raises for a model that cannot be copied."""
    twin = copy.deepcopy(model).to(memory_format=torch.channels_last)
    for module in twin.modules():
        if isinstance(module, _ConvThenDense):
            module.read_features_channels_last()
    return twin


def honey_small_conv(input_shape: Shape, num_classes: int) -> nn.Module:
    """HoneyModels MNIST net. The paper gives only "Small Conv., 6 layers"; we use the
    PyTorch MNIST example (conv32-conv64-pool-dropout-fc128-fc) since the authors used PyTorch 1.5."""
    c = input_shape[0]
    features = nn.Sequential(
        nn.Conv2d(c, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25))
    return _ConvThenDense(features, lambda f: nn.Sequential(
        nn.Linear(f, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, num_classes)),
        input_shape, "honey_small_conv")


def deepsec_mnist(input_shape: Shape, num_classes: int) -> nn.Module:
    """DEEPSEC's MNIST net (Attractors paper, §VI): conv 32-32-64-64 (3x3), FC 200-200, dropout 0.5."""
    c = input_shape[0]
    features = nn.Sequential(
        nn.Conv2d(c, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2))
    return _ConvThenDense(features, lambda f: nn.Sequential(
        nn.Linear(f, 200), nn.ReLU(), nn.Dropout(0.5), nn.Linear(200, 200), nn.ReLU(),
        nn.Linear(200, num_classes)), input_shape, "deepsec_mnist")


def _conv_relu_bn(cin: int, cout: int, k: int, padding: int = 0) -> list[nn.Module]:
    # NeuralFP's tables list "Convolution + ReLU + BatchNorm" in that order.
    return [nn.Conv2d(cin, cout, k, padding=padding), nn.ReLU(), nn.BatchNorm2d(cout)]


def _dense_relu_bn(fin: int, fout: int) -> list[nn.Module]:
    return [nn.Linear(fin, fout), nn.ReLU(), nn.BatchNorm1d(fout)]


def nfp_mnist(input_shape: Shape, num_classes: int) -> nn.Module:
    """Neural Fingerprinting Table 3 (MNIST)."""
    c = input_shape[0]
    features = nn.Sequential(*_conv_relu_bn(c, 32, 5), nn.MaxPool2d(2), *_conv_relu_bn(32, 64, 5), nn.MaxPool2d(2))
    return _ConvThenDense(features, lambda f: nn.Sequential(
        *_dense_relu_bn(f, 200), *_dense_relu_bn(200, 200), nn.Linear(200, num_classes)),
        input_shape, "nfp_mnist")


def nfp_cifar10(input_shape: Shape, num_classes: int) -> nn.Module:
    """Neural Fingerprinting Table 4 (CIFAR-10); 3x3 convolutions padded to keep the size."""
    c = input_shape[0]
    features = nn.Sequential(
        *_conv_relu_bn(c, 32, 3, 1), *_conv_relu_bn(32, 64, 3, 1), nn.MaxPool2d(2),
        *_conv_relu_bn(64, 128, 3, 1), *_conv_relu_bn(128, 128, 3, 1), nn.MaxPool2d(2))
    return _ConvThenDense(features, lambda f: nn.Sequential(
        *_dense_relu_bn(f, 256), *_dense_relu_bn(256, 256), nn.Linear(256, num_classes)),
        input_shape, "nfp_cifar10")


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin  # option A: parameter-free shortcut, subsample and zero-pad channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.pad:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + shortcut)


class ResNet20(nn.Module):
    """ResNet-20 for 32x32 images (He et al. 2016, §4.2): 3 stages x 3 blocks, 16/32/64 channels."""

    def __init__(self, input_shape: Shape, num_classes: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(input_shape[0], 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(_BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def luring_mnist(input_shape: Shape, num_classes: int) -> nn.Module:
    """Luring Table 2 (Madry et al. 2018's MNIST net): conv 32 (5x5), pool, conv 64 (5x5), pool,
    dense 1024, dense K; 'same' padding as in the TensorFlow original."""
    c = input_shape[0]
    features = nn.Sequential(nn.Conv2d(c, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
    return _ConvThenDense(features, lambda f: nn.Sequential(nn.Linear(f, 1024), nn.ReLU(), nn.Linear(1024, num_classes)),
                          input_shape, "luring_mnist")


def _conv_bn_relu(cin: int, cout: int, pool: bool = False) -> list[nn.Module]:
    # Luring Tables 3-4 list "Conv + MaxPool + BN + ReLU" in that order.
    return [nn.Conv2d(cin, cout, 3, padding=1), *([nn.MaxPool2d(2)] if pool else []), nn.BatchNorm2d(cout), nn.ReLU()]


def luring_vgg(input_shape: Shape, num_classes: int) -> nn.Module:
    """Luring Tables 3 (SVHN) and 4 (CIFAR-10): three blocks of two 3x3 convs, then dense 1024-1024;
    channels 64-128-256 for SVHN and 128-256-512 for CIFAR-10. The two data sets share a shape, so
    the width is a separate name: ``luring_vgg`` is SVHN's, ``luring_vgg_wide`` CIFAR-10's."""
    return _luring_vgg(input_shape, num_classes, (64, 128, 256), "luring_vgg")


def luring_vgg_wide(input_shape: Shape, num_classes: int) -> nn.Module:
    """Luring Table 4 (CIFAR-10): ``luring_vgg`` with 128-256-512 channels."""
    return _luring_vgg(input_shape, num_classes, (128, 256, 512), "luring_vgg_wide")


def _luring_vgg(input_shape: Shape, num_classes: int, widths: tuple[int, int, int], name: str) -> nn.Module:
    layers, cin = [], input_shape[0]
    for w in widths:
        layers += _conv_bn_relu(cin, w) + _conv_bn_relu(w, w, pool=True)
        cin = w
    return _ConvThenDense(nn.Sequential(*layers), lambda f: nn.Sequential(
        nn.Linear(f, 1024), nn.BatchNorm1d(1024), nn.ReLU(), nn.Linear(1024, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
        nn.Linear(1024, num_classes)), input_shape, name)


def mlp(input_shape: Shape, num_classes: int) -> nn.Module:
    """One hidden layer of 128 units: fast enough for property tests and 8x8 digits."""
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 128), nn.ReLU(), nn.Linear(128, num_classes))


REGISTRY: dict[str, Callable[[Shape, int], nn.Module]] = {
    "honey_small_conv": honey_small_conv,
    "resnet20": ResNet20,
    "deepsec_mnist": deepsec_mnist,
    "nfp_mnist": nfp_mnist,
    "nfp_cifar10": nfp_cifar10,
    "luring_mnist": luring_mnist,
    "luring_vgg": luring_vgg,
    "luring_vgg_wide": luring_vgg_wide,
    "mlp": mlp,
}


def _conv(cin: int, cout: int, bn: bool = False, act: nn.Module | None = None, padding: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=padding), *([nn.BatchNorm2d(cout)] if bn else []),
            *([act] if act is not None else [])]


def luring_p_mnist(input_shape: Shape) -> nn.Module:
    """Luring Table 5, the MNIST component P: the Keras convolutional autoencoder it lists
    (16-8-8 filters down, 8-8-16 up, sigmoid). Table 5 prints two poolings and three upsamplings,
    which cannot return 28x28; the authors' code downsamples a third time with the third convolution
    itself (stride 2, 'same' padding: 7 -> 4) and un-pads with one unpadded 3x3 conv (16 -> 14),
    which is what is built here."""
    c = input_shape[0]
    return nn.Sequential(
        *_conv(c, 16, act=nn.ReLU()), nn.MaxPool2d(2), *_conv(16, 8, act=nn.ReLU()), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        *_conv(8, 8, act=nn.ReLU()), nn.Upsample(scale_factor=2), *_conv(8, 8, act=nn.ReLU()), nn.Upsample(scale_factor=2),
        *_conv(8, 16, act=nn.ReLU(), padding=0), nn.Upsample(scale_factor=2), *_conv(16, c, act=nn.Sigmoid()))


def luring_p_svhn(input_shape: Shape) -> nn.Module:
    """Luring Table 6 (SVHN): conv-BN-ReLU 128, pool, 256, pool, 512, 1024, pool, 512, 512, up,
    256, up, 128, up, 64, then conv 3 + BN + sigmoid."""
    c, relu = input_shape[0], nn.ReLU
    return nn.Sequential(
        *_conv(c, 128, True, relu()), nn.MaxPool2d(2), *_conv(128, 256, True, relu()), nn.MaxPool2d(2),
        *_conv(256, 512, True, relu()), *_conv(512, 1024, True, relu()), nn.MaxPool2d(2),
        *_conv(1024, 512, True, relu()), *_conv(512, 512, True, relu()), nn.Upsample(scale_factor=2),
        *_conv(512, 256, True, relu()), nn.Upsample(scale_factor=2), *_conv(256, 128, True, relu()),
        nn.Upsample(scale_factor=2), *_conv(128, 64, True, relu()), *_conv(64, c, True, nn.Sigmoid()))


def luring_p_cifar10(input_shape: Shape) -> nn.Module:
    """Luring Table 7 (CIFAR-10): conv-BN-ReLU 128, 256, pool, 512, 1024, 512, 512, 256, up, 128, 64,
    then conv 3 + BN + sigmoid."""
    c, relu = input_shape[0], nn.ReLU
    return nn.Sequential(
        *_conv(c, 128, True, relu()), *_conv(128, 256, True, relu()), nn.MaxPool2d(2),
        *_conv(256, 512, True, relu()), *_conv(512, 1024, True, relu()), *_conv(1024, 512, True, relu()),
        *_conv(512, 512, True, relu()), *_conv(512, 256, True, relu()), nn.Upsample(scale_factor=2),
        *_conv(256, 128, True, relu()), *_conv(128, 64, True, relu()), *_conv(64, c, True, nn.Sigmoid()))


COMPONENTS: dict[str, Callable[[Shape], nn.Module]] = {
    "luring_p_mnist": luring_p_mnist,
    "luring_p_svhn": luring_p_svhn,
    "luring_p_cifar10": luring_p_cifar10,
}


def keras_initialisation(module: nn.Module) -> nn.Module:
    """Keras' default initialisation, which the Luring authors' code starts P from (Algorithm 1: "randomly
    initialised"): Glorot-uniform weights and zero biases in every convolution and dense layer. PyTorch's default
    (uniform ±1/√fan_in, random biases) shrinks the signal through P's seven ReLU convolutions, so a fresh P
    starts from a nearly input-independent image and learns more slowly."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


def build_component(name: str, input_shape: Shape, seed: int | None = None) -> nn.Module:
    """Build an image-to-image component (Luring's P) for ``input_shape``, Keras-initialised like the authors'
    P (``keras_initialisation``); it must give back that shape."""
    if name not in COMPONENTS:
        raise ValueError(f"component={name!r} is not known; allowed: {', '.join(COMPONENTS)}")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        component = keras_initialisation(COMPONENTS[name](tuple(input_shape)))
    with torch.no_grad():
        out = component.eval()(torch.zeros(1, *input_shape)).shape[1:]
    if tuple(out) != tuple(input_shape):
        raise ValueError(f"component {name!r} maps inputs shaped {tuple(input_shape)} to {tuple(out)}; "
                         f"it is built for other image sizes")
    return component.train()


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def check_name(name: str, parameter: str = "name") -> None:
    if name not in REGISTRY:
        raise ValueError(f"{parameter}={name!r} is not a known model; allowed: {', '.join(REGISTRY)}")


def build(name: str, input_shape: Shape, num_classes: int, seed: int | None = None) -> nn.Module:
    """Build model ``name`` for ``input_shape`` (C, H, W) and ``num_classes``; ``seed`` fixes the init."""
    check_name(name)
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes} is not allowed; a classifier needs at least 2")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return REGISTRY[name](tuple(input_shape), num_classes)
