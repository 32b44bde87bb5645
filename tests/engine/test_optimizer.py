"""The optimizer's parameter groups: biases as the OHEM prototxt (lr_mult 2; decay_mult 0 on fc)."""

import pytest
import torch

from ohemcli.config import ModelConfig, TrainConfig
from ohemcli.engine.optimizer import build_optimizer
from ohemcli.model.fast_rcnn import FastRCNN


def _model():
    model = FastRCNN(ModelConfig(backbone="tiny"), num_classes=2)
    frozen = next(p for n, p in model.named_parameters() if n.endswith(".bias"))
    frozen.requires_grad_(False)  # a frozen bias (as conv1-2 of the paper's VGG16) is in no group
    return model, frozen


def test_groups_hold_exactly_the_trainable_biases_with_their_lr_and_decay():
    model, frozen = _model()
    cfg = TrainConfig(lr=0.001, weight_decay=0.0005, bias_lr_factor=2.0, bias_weight_decay=0.0)
    optimizer, _ = build_optimizer(model, cfg)
    weights, biases = optimizer.param_groups
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert [id(p) for p in biases["params"]] == [id(p) for n, p in trainable if n.endswith("bias")]
    assert [id(p) for p in weights["params"]] == [
        id(p) for n, p in trainable if not n.endswith("bias")
    ]
    assert any(p is model.cls_score.bias for p in biases["params"])
    assert any(p is model.bbox_pred.weight for p in weights["params"])
    assert all(p is not frozen for g in optimizer.param_groups for p in g["params"])
    assert (weights["lr"], weights["weight_decay"]) == (0.001, 0.0005)
    assert (biases["lr"], biases["weight_decay"]) == (0.002, 0.0)


def test_defaults_treat_biases_as_weights():
    model, _ = _model()
    optimizer, _ = build_optimizer(model, TrainConfig(lr=0.01, weight_decay=0.001))
    weights, biases = optimizer.param_groups
    assert (biases["lr"], biases["weight_decay"]) == (weights["lr"], weights["weight_decay"])
    assert (biases["lr"], biases["weight_decay"]) == (0.01, 0.001)


def test_the_schedule_keeps_the_bias_factor_through_warm_up_and_drops():
    model, _ = _model()
    cfg = TrainConfig(lr=0.01, bias_lr_factor=2.0, warmup_iters=4, lr_steps=(6,), lr_gamma=0.1)
    optimizer, scheduler = build_optimizer(model, cfg)
    seen = []
    for _ in range(8):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    # warm-up (it+1)/4 for it < 4, then 1, then x0.1 from iteration 6 on
    expected_weights = [0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01, 0.001, 0.001]
    assert [w for w, _ in seen] == pytest.approx(expected_weights)
    assert [b for _, b in seen] == pytest.approx([2 * w for w in expected_weights])


def test_bias_groups_match_the_single_group_update_by_default():
    # Two groups with equal settings update every parameter exactly as one group would.
    torch.manual_seed(0)
    a, _ = _model()
    b, _ = _model()
    b.load_state_dict(a.state_dict())
    single = torch.optim.SGD(
        [p for p in a.parameters() if p.requires_grad], lr=0.01, momentum=0.9, weight_decay=0.001
    )
    grouped, _ = build_optimizer(b, TrainConfig(lr=0.01, momentum=0.9, weight_decay=0.001))
    images = torch.rand(1, 3, 32, 32)
    for model, optimizer in ((a, single), (b, grouped)):
        for _ in range(2):
            optimizer.zero_grad()
            model.features(images).square().mean().backward()
            optimizer.step()
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


def _vgg_like() -> torch.nn.Module:
    """VGG16's kinds of layer in small: a frozen conv, a trainable conv, fc6 and the outputs."""
    model = torch.nn.ModuleDict(
        {
            "trunk": torch.nn.Sequential(
                torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3)
            ),
            "head": torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 8)),
            "cls_score": torch.nn.Linear(8, 3),
            "bbox_pred": torch.nn.Linear(8, 12),
        }
    )
    model["trunk"][0].requires_grad_(False)  # conv1-2 of the paper: lr_mult 0, in no group
    return model


def test_fc_scope_is_the_release_rule_conv_biases_keep_weight_decay():
    model = _vgg_like()
    cfg = TrainConfig(
        lr=0.001, weight_decay=0.0005, bias_lr_factor=2.0, bias_weight_decay=0.0,
        bias_decay_scope="fc",
    )  # fmt: skip
    weights, fc_biases, conv_biases = build_optimizer(model, cfg)[0].param_groups
    trunk, head = model["trunk"], model["head"]
    assert {id(p) for p in weights["params"]} == {
        id(trunk[2].weight), id(head[1].weight), id(model["cls_score"].weight),
        id(model["bbox_pred"].weight),
    }  # fmt: skip
    assert {id(p) for p in fc_biases["params"]} == {
        id(head[1].bias),
        id(model["cls_score"].bias),
        id(model["bbox_pred"].bias),
    }
    assert [id(p) for p in conv_biases["params"]] == [id(trunk[2].bias)]
    # prototxt: weights lr_mult 1 decay_mult 1; fc biases lr_mult 2 decay_mult 0; conv biases
    # lr_mult 2 and Caffe's default decay_mult 1
    assert (weights["lr"], weights["weight_decay"]) == (0.001, 0.0005)
    assert (fc_biases["lr"], fc_biases["weight_decay"]) == (0.002, 0.0)
    assert (conv_biases["lr"], conv_biases["weight_decay"]) == (0.002, 0.0005)


def test_fc_scope_on_the_tiny_model_puts_its_norm_biases_with_the_conv_biases():
    model = FastRCNN(ModelConfig(backbone="tiny"), num_classes=2)
    cfg = TrainConfig(bias_weight_decay=0.0, bias_decay_scope="fc")
    _, fc_biases, other = build_optimizer(model, cfg)[0].param_groups
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert {id(p) for p in fc_biases["params"]} == {id(m.bias) for m in linear}
    norms = [m for m in model.trunk if isinstance(m, torch.nn.GroupNorm)]
    assert {id(p) for p in other["params"]} == {id(m.bias) for m in norms}
    assert len(linear) == 4 and len(norms) == 5  # head fc x2, cls_score, bbox_pred; five convs


def test_the_paper_preset_uses_the_release_bias_rule():
    from ohemcli.config import parse_config
    from ohemcli.presets import preset_text

    train = parse_config(preset_text("voc07_vgg16"), "preset").train
    assert (train.bias_lr_factor, train.bias_weight_decay) == (2.0, 0.0)
    assert train.bias_decay_scope == "fc"
