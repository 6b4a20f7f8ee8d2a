"""The network: exact shapes and parameter counts of method.md, torchvision-compatible teacher names."""

import pytest
import torch

from fwrd.model import ReverseDistillation
from fwrd.model.teacher import WideResNetTeacher
from fwrd.model.weights import apply_teacher_state


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ReverseDistillation("fwrd").eval()


def test_parameter_counts_match_method_notes(model):
    assert count(model.teacher) == 24_862_528
    assert count(model.bottleneck) == 109_216_768
    assert count(model.student) == 24_917_504
    assert count(ReverseDistillation("rd4ad").bottleneck) == 58_885_120


def test_no_unused_layers(model):
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith(("teacher.layer4", "teacher.fc", "bottleneck.conv4", "bottleneck.bn4")) for n in names)


def test_forward_shapes_at_256(model):
    with torch.no_grad():
        teacher, student = model(torch.randn(1, 3, 256, 256))
    expected = [(1, 256, 64, 64), (1, 512, 32, 32), (1, 1024, 16, 16)]
    assert [tuple(t.shape) for t in teacher] == expected
    assert [tuple(s.shape) for s in student] == expected
    assert all((t >= 0).all() for t in teacher), "teacher features are post-ReLU"


def test_bottleneck_shortcut_variants():
    fw = ReverseDistillation("fwrd").bottleneck.bn_layer[0].downsample[0]
    rd = ReverseDistillation("rd4ad").bottleneck.bn_layer[0].downsample[0]
    assert fw.kernel_size == (3, 3) and fw.stride == (2, 2) and fw.in_channels == 3072 and fw.out_channels == 2048
    assert rd.kernel_size == (1, 1) and rd.stride == (2, 2)


def test_teacher_is_frozen_and_stays_in_eval(model):
    model.train()
    assert not model.teacher.training
    assert all(not p.requires_grad for p in model.teacher.parameters())
    assert all(p.requires_grad for p in model.trainable_parameters())
    model.eval()


def _torchvision_style_state(teacher: WideResNetTeacher) -> dict:
    """A full wide_resnet50_2 state dict: our keys plus layer4 and fc, as torchvision would hold."""
    state = {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v.clone()
             for k, v in teacher.state_dict().items()}
    state["layer4.0.conv1.weight"] = torch.randn(1024, 1024, 1, 1)
    state["fc.weight"] = torch.randn(1000, 2048)
    state["fc.bias"] = torch.randn(1000)
    return state


def test_torchvision_state_dict_loads_with_no_missing_keys():
    teacher = WideResNetTeacher()
    state = _torchvision_style_state(teacher)
    result = teacher.load_state_dict(state, strict=False)
    assert result.missing_keys == []
    assert sorted(result.unexpected_keys) == ["fc.bias", "fc.weight", "layer4.0.conv1.weight"]
    assert apply_teacher_state(WideResNetTeacher(), state) == []


def test_teacher_key_names_follow_torchvision_scheme():
    keys = set(WideResNetTeacher().state_dict())
    assert {"conv1.weight", "bn1.running_mean", "bn1.num_batches_tracked"} <= keys
    assert "layer1.0.downsample.0.weight" in keys and "layer3.5.bn3.bias" in keys
    shapes = {k: tuple(v.shape) for k, v in WideResNetTeacher().state_dict().items()}
    # torchvision wide_resnet50_2: width = planes * 2
    assert shapes["layer1.0.conv2.weight"] == (128, 128, 3, 3)
    assert shapes["layer2.0.conv2.weight"] == (256, 256, 3, 3)
    assert shapes["layer3.0.conv1.weight"] == (512, 512, 1, 1)
    assert shapes["layer3.0.downsample.0.weight"] == (1024, 512, 1, 1)


def test_teacher_equals_torchvision_when_available():
    torchvision = pytest.importorskip("torchvision", reason="torchvision not installed (it is optional)")
    reference = torchvision.models.wide_resnet50_2(weights=None).eval()
    teacher = WideResNetTeacher().eval()
    assert teacher.load_state_dict(reference.state_dict(), strict=False).missing_keys == []
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        f = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        f1 = reference.layer1(f)
        f2 = reference.layer2(f1)
        f3 = reference.layer3(f2)
        ours = teacher(x)
    for a, b in zip(ours, (f1, f2, f3)):
        torch.testing.assert_close(a, b)
