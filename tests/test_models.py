"""SmallCNN matches the study's class; teachers get a fresh head; weights load or fail clearly."""

from __future__ import annotations

from urllib.error import URLError

import pytest
import torch
import torchvision
from torch import nn

from kdcore.models import (
    TEACHER_ARCHS,
    ModelError,
    SmallCNN,
    build_model,
    build_teacher,
    known_archs,
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


def test_all_resnets_are_known():
    assert set(TEACHER_ARCHS) == {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}
    assert "smallcnn" in known_archs()


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
    model = build_teacher("resnet18", 10, init="file", weights_file=path)
    _assert_backbone_equals(model, state)
    assert model.fc.weight.shape == (10, 512)


def test_file_init_accepts_a_file_without_fc(tmp_path):
    state = {k: v for k, v in _imagenet_shaped_state().items() if not k.startswith("fc.")}
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    model = build_teacher("resnet18", 10, init="file", weights_file=path)
    _assert_backbone_equals(model, state)


def test_file_init_accepts_a_ten_class_fc(tmp_path):
    torch.manual_seed(4)
    state = build_model("resnet18", 10).state_dict()
    path = tmp_path / "ten.pth"
    torch.save(state, path)
    _assert_backbone_equals(build_teacher("resnet18", 10, "file", path), state)


def test_imagenet_init_with_a_local_file_needs_no_network(tmp_path, monkeypatch):
    def offline(url, *args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    state = _imagenet_shaped_state()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, path)
    _assert_backbone_equals(build_teacher("resnet18", 10, "imagenet", path), state)


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
