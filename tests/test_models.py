"""SmallCNN matches the study's class; CifarNet and the ResNet stems have the stated shapes and
cost; teachers get a fresh head; weights load (with either stem) or fail clearly."""

from __future__ import annotations

from urllib.error import URLError

import pytest
import torch
import torchvision
from torch import nn

from kdcore.models import (
    TEACHER_ARCHS,
    CifarNet,
    ModelError,
    SmallCNN,
    build_model,
    build_teacher,
    known_archs,
    suggested_teacher_arch,
)


class StudyCNN(nn.Module):
    """The study's student, written out as the study wrote it."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def test_smallcnn_parameter_names_are_the_studys():
    names = list(SmallCNN().state_dict())
    assert names == [
        "features.0.weight",
        "features.0.bias",
        "features.3.weight",
        "features.3.bias",
        "features.6.weight",
        "features.6.bias",
        "classifier.weight",
        "classifier.bias",
    ]


def test_smallcnn_state_dict_moves_both_ways_strictly_and_gives_same_outputs():
    torch.manual_seed(0)
    study, ours = StudyCNN(), SmallCNN()
    ours.load_state_dict(study.state_dict(), strict=True)
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(ours.eval()(x), study.eval()(x), rtol=0, atol=0)

    torch.manual_seed(1)
    ours_again, study_again = SmallCNN(), StudyCNN()
    study_again.load_state_dict(ours_again.state_dict(), strict=True)
    torch.testing.assert_close(study_again.eval()(x), ours_again.eval()(x), rtol=0, atol=0)


def test_smallcnn_output_shape_follows_num_classes():
    assert SmallCNN(7)(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize("arch", ["resnet18", "resnet34"])
def test_teacher_gets_a_ten_class_head(arch):
    model = build_teacher(arch, 10)
    assert model.fc.out_features == 10
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet101_is_built_with_a_ten_class_head():
    model = build_model("resnet101", 10)
    assert (model.fc.in_features, model.fc.out_features) == (2048, 10)


def test_cifarnet_and_all_resnets_are_known_teachers():
    assert set(TEACHER_ARCHS) == {
        "cifarnet",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
    }
    assert "smallcnn" in known_archs()


def test_the_suggested_teacher_is_resnet101_with_a_gpu_and_cifarnet_without():
    assert suggested_teacher_arch(cuda_available=True) == "resnet101"
    assert suggested_teacher_arch(cuda_available=False) == "cifarnet"


def multiply_adds(model: nn.Module, size: int = 32) -> int:
    """Multiply-adds of one forward pass of a (1, 3, size, size) image: convs and linears."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            per_output = module.in_channels // module.groups * kernel
            total += output[0].numel() * per_output
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    model.eval()(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return total


def test_cifarnet_costs_what_its_docstring_states():
    # CifarNet's docstring: 69.1 M multiply-adds; SmallCNN 10.3 M; ResNet18 (cifar stem) 555 M
    assert round(multiply_adds(CifarNet()) / 1e6, 1) == 69.1
    assert round(multiply_adds(SmallCNN()) / 1e6, 1) == 10.3
    assert round(multiply_adds(build_model("resnet18", stem="cifar")) / 1e6) == 555


def test_cifarnet_shapes_and_parameter_count():
    model = CifarNet(10)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    whitened = model.whiten(torch.zeros(2, 3, 32, 32))
    assert whitened.shape == (2, 24, 31, 31)
    sizes = [tuple(group(x).shape[1:]) for group, x in _group_inputs(model, whitened)]
    assert sizes == [(48, 15, 15), (192, 7, 7), (192, 3, 3)]
    whitening = 24 * 3 * 2 * 2 + 24
    convs = 9 * (24 * 48 + 48 * 48 + 48 * 192 + 192 * 192 + 192 * 192 + 192 * 192)
    batchnorm = 2 * 2 * (48 + 192 + 192)  # scale and shift, two per group
    head = 192 * 10  # no bias
    assert sum(p.numel() for p in model.parameters()) == whitening + convs + batchnorm + head
    assert CifarNet(7)(torch.zeros(1, 3, 32, 32)).shape == (1, 7)


def _group_inputs(model, x):
    for group in model.groups:
        yield group, x
        x = group(x)


def test_cifarnet_trains_shifts_not_scales_and_its_shifts_faster():
    model = CifarNet(10)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert "whiten.weight" not in trainable and "whiten.bias" in trainable
    assert not any(name.endswith("norm1.weight") for name in trainable)
    assert "groups.0.norm1.bias" in trainable
    assert model.lr_scale("groups.0.norm1.bias") == 64.0
    assert model.lr_scale("groups.0.conv1.weight") == model.lr_scale("classifier.weight") == 1.0


def test_cifarnet_convs_start_as_identities_on_their_first_channels():
    group = CifarNet(10).groups[1]  # 48 -> 192 channels
    x = torch.randn(1, 48, 8, 8)
    assert torch.allclose(group.conv1(x)[:, :48], x)
    assert not torch.allclose(group.conv1(x)[:, 48:96], x)
    y = torch.randn(1, 192, 4, 4)
    assert torch.allclose(group.conv2(y), y)


def test_cifarnet_whitening_decorrelates_the_patches_of_its_images():
    torch.manual_seed(0)
    mixing = torch.tensor([[1.0, 0.8, 0.6], [0.0, 0.5, 0.4], [0.0, 0.0, 0.3]])
    images = torch.einsum("ij,njhw->nihw", mixing, torch.randn(64, 3, 16, 16))  # correlated RGB
    model = CifarNet(10)
    model.initialise_from(images)
    filters = model.whiten.weight[:12]
    assert torch.allclose(model.whiten.weight[12:], -filters)
    responses = torch.nn.functional.conv2d(images, filters)  # (N, 12, 15, 15)
    flat = responses.permute(1, 0, 2, 3).reshape(12, -1)
    second_moments = flat @ flat.T / flat.shape[1]
    assert torch.allclose(second_moments, torch.eye(12), atol=0.05)


def test_fit_whitens_cifarnet_from_the_training_images_but_not_on_resume(synthetic_train):
    from kdcore.augment import normalize
    from kdcore.engine import Callback, TrainConfig, fit

    class KeepState(Callback):
        def on_train_state(self, epoch, state):
            self.state = getattr(self, "state", state)  # the first epoch's

    train = synthetic_train.subset(128, seed=0)
    model, kept = CifarNet(10), KeepState()
    untrained = model.whiten.weight.detach().clone()
    fit(
        model,
        train,
        train,
        TrainConfig(epochs=2, batch_size=64),
        callbacks=[kept],
        device=torch.device("cpu"),
    )
    fitted = CifarNet(10)
    fitted.initialise_from(normalize(train.images))
    assert not torch.equal(model.whiten.weight, untrained)
    assert torch.allclose(model.whiten.weight, fitted.whiten.weight)  # from the data, then frozen
    resumed = CifarNet(10)
    resumed.load_state_dict(model.state_dict())
    with torch.no_grad():
        resumed.whiten.weight.fill_(0.5)  # the saved whitening must survive a resume
    fit(
        resumed,
        train,
        train,
        TrainConfig(epochs=2, batch_size=64),
        resume=kept.state,
        device=torch.device("cpu"),
    )
    assert torch.all(resumed.whiten.weight == 0.5)


def test_cifarnet_learns_a_tiny_problem(synthetic_train):
    from kdcore.engine import TrainConfig, evaluate, fit
    from kdcore.recipes import optimiser_defaults

    torch.manual_seed(0)
    train = synthetic_train.subset(512, seed=0)
    model = CifarNet(10)
    before = evaluate(model, train, torch.device("cpu"))["acc"]
    recipe = optimiser_defaults("teacher", "cifarnet", None, "scratch")
    config = TrainConfig(epochs=3, batch_size=64, **recipe)
    fit(model, train, train, config, device=torch.device("cpu"))
    after = evaluate(model, train, torch.device("cpu"))["acc"]
    assert after > max(0.6, before + 0.3), (before, after)


def test_cifar_stem_keeps_32_px_maps_and_the_imagenet_stem_shrinks_them_to_8():
    x = torch.zeros(1, 3, 32, 32)
    for stem, size in (("cifar", 32), ("imagenet", 8)):
        model = build_model("resnet18", 10, stem=stem).eval()
        stem_out = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        assert model.layer1(stem_out).shape == (1, 64, size, size), stem
        assert model(x).shape == (1, 10)
    cifar = build_model("resnet18", 10, stem="cifar")
    assert (cifar.conv1.kernel_size, cifar.conv1.stride) == ((3, 3), (1, 1))
    assert isinstance(cifar.maxpool, nn.Identity)
    imagenet = build_model("resnet18", 10, stem="imagenet")
    assert (imagenet.conv1.kernel_size, imagenet.conv1.stride) == ((7, 7), (2, 2))


def test_stems_are_refused_for_other_archs_and_unknown_stems_are_named():
    with pytest.raises(ModelError, match="Only ResNets"):
        build_model("cifarnet", 10, stem="cifar")
    with pytest.raises(ModelError, match="Unknown stem 'tiny'"):
        build_model("resnet18", 10, stem="tiny")


def test_cifarnet_has_no_imagenet_weights():
    with pytest.raises(ModelError, match="no ImageNet weights"):
        build_teacher("cifarnet", 10, init="imagenet")


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ModelError) as caught:
        build_model("vgg11")
    message = str(caught.value)
    assert "vgg11" in message
    for arch in known_archs():
        assert arch in message


def test_unknown_initialisation_is_refused():
    with pytest.raises(ModelError, match="Unknown initialisation"):
        build_teacher("resnet18", 10, init="pretrained")


def test_imagenet_offline_names_the_file_and_the_folder(monkeypatch):
    def offline(url, *args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(ModelError) as caught:
        build_teacher("resnet18", 10, init="imagenet")
    message = str(caught.value)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    assert url.rsplit("/", 1)[-1] in message
    assert str(torch.hub.get_dir()) in message
    assert "--weights-file" in message


def test_file_init_without_a_file_asks_for_weights_file():
    with pytest.raises(ModelError, match="--weights-file"):
        build_teacher("resnet18", 10, init="file")


def _imagenet_shaped_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return torchvision.models.resnet18(weights=None).state_dict()


def _assert_backbone_equals(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    backbone = [name for name in state if not name.startswith("fc.")]
    assert backbone, "the file should hold backbone weights"
    for name in backbone:
        torch.testing.assert_close(loaded[name], state[name], rtol=0, atol=0)


def test_file_init_loads_the_backbone_and_adds_a_fresh_head(tmp_path):
    state = _imagenet_shaped_state()  # 1000-class fc
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = build_teacher("resnet18", 10, init="file", weights_file=path, stem="imagenet")
    _assert_backbone_equals(model, state)
    assert model.fc.weight.shape == (10, 512)


@pytest.mark.parametrize("init", ["imagenet", "file"])
def test_imagenet_weights_with_the_cifar_stem_load_all_but_conv1(tmp_path, init):
    state = _imagenet_shaped_state()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, path)
    model = build_teacher("resnet18", 10, init=init, weights_file=path, stem="cifar")
    assert model.conv1.weight.shape == (64, 3, 3, 3)  # a fresh 3x3 stem: 7x7 does not fit
    _assert_backbone_equals(model, {k: v for k, v in state.items() if not k.startswith("conv1")})
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_file_init_accepts_a_file_without_fc(tmp_path):
    state = {k: v for k, v in _imagenet_shaped_state().items() if not k.startswith("fc.")}
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    model = build_teacher("resnet18", 10, init="file", weights_file=path, stem="imagenet")
    _assert_backbone_equals(model, state)


def test_file_init_accepts_a_ten_class_fc(tmp_path):
    torch.manual_seed(4)
    for stem in ("cifar", "imagenet"):  # a file of either stem loads into a model of that stem
        state = build_model("resnet18", 10, stem=stem).state_dict()
        path = tmp_path / f"ten-{stem}.pth"
        torch.save(state, path)
        _assert_backbone_equals(build_teacher("resnet18", 10, "file", path, stem=stem), state)


def test_imagenet_init_with_a_local_file_needs_no_network(tmp_path, monkeypatch):
    def offline(url, *args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    state = _imagenet_shaped_state()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, path)
    model = build_teacher("resnet18", 10, "imagenet", path, stem="imagenet")
    _assert_backbone_equals(model, state)


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(ModelError, match="does not hold resnet18 weights"):
        build_teacher("resnet18", 10, init="file", weights_file=path)


def test_garbage_weights_file_is_refused(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ModelError, match="not a readable PyTorch state_dict"):
        build_teacher("resnet18", 10, init="file", weights_file=path)


def test_weights_file_with_code_is_refused(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"model": nn.Linear(2, 2)}, path)  # a module object: weights_only refuses it
    with pytest.raises(ModelError, match="not a readable"):
        build_teacher("resnet18", 10, init="file", weights_file=path)


def test_missing_weights_file_is_refused(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        build_teacher("resnet18", 10, init="file", weights_file=tmp_path / "nope.pth")
