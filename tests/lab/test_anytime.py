import numpy as np
import pytest
import torch
from torch import nn

from streamsnn.config import load_train_config
from streamsnn.lab.anytime import (
    AnytimeObjective,
    SparsityPenalty,
    optimize_scaling,
    pareto_latency,
    pareto_power,
    prune_small_weights,
    scalable_layers,
    scale_channels,
    simulate,
)
from streamsnn.lab.train import train
from streamsnn.snn.checkpoint import load_checkpoint
from streamsnn.snn.convert import convert, fold_batchnorm
from streamsnn.snn.models import digits_cnn
from streamsnn.sources.digits import digit_frames, digits_split


def folded(ann: nn.Sequential) -> list[nn.Module]:
    mods, out = list(ann), []
    i = 0
    while i < len(mods):
        if isinstance(mods[i], nn.Conv2d) and isinstance(mods[i + 1], nn.BatchNorm2d):
            out.append(fold_batchnorm(mods[i], mods[i + 1]))
            i += 2
        else:
            out.append(mods[i])
            i += 1
    return out


def test_channel_scaling_leaves_the_ann_function_unchanged():
    torch.manual_seed(0)
    ann = digits_cnn(in_channels=1, size=16, activation="relu").eval()
    layers = folded(ann)
    x = torch.rand(8, 1, 16, 16)
    with torch.no_grad():
        before = nn.Sequential(*layers)(x)
        positions = scalable_layers(layers, lambda m: isinstance(m, nn.ReLU))
        assert len(positions) == 2
        for p in positions:
            channels = layers[p - 1].out_channels
            scale_channels(layers, p, torch.exp(torch.randn(channels)))
        after = nn.Sequential(*layers)(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert not torch.equal(layers[0].weight, folded(ann)[0].weight)


def test_firing_rate_scaling_and_high_entropy_init_lower_pareto_latency(relu_digits):
    train_images, train_labels, _ = digits_split("train")
    images, labels, _ = digits_split("val")
    cal = torch.from_numpy(digit_frames(train_images[:150], 16))[:, None]
    x = torch.from_numpy(digit_frames(images, 16))[:, None]
    with torch.no_grad():
        ann_acc = float((relu_digits.ann(x).argmax(1).numpy() == labels).mean())
    steps = 12

    def p_lat(snn):
        acc, *_ = simulate(snn, x, labels, steps)
        return float((ann_acc - acc).sum())

    latency = {}
    for v0 in (0.0, 0.5):
        snn = convert(relu_digits.ann, (1, 16, 16), "data_norm", v0=v0, calibration=cal)
        latency[("unscaled", v0)] = p_lat(snn)
        result = optimize_scaling(snn, cal, train_labels[:150], steps, ann_acc, {"global": 8, "layer": 16})
        latency[("scaled", v0)] = p_lat(snn)
        assert result.history and set(result.etas) == {1, 4}
    assert latency[("unscaled", 0.5)] < latency[("unscaled", 0.0)]  # high-entropy initialisation
    assert latency[("scaled", 0.0)] < latency[("unscaled", 0.0)]  # firing-rate scaling
    assert latency[("scaled", 0.5)] < latency[("unscaled", 0.5)]


def test_objective_terms_paper_form():
    """TAC = P_l / T, PAC = P_p / (T·E_ref) with e_t = accumulates + MACs."""
    obj = AnytimeObjective()
    acc = np.array([0.5, 0.9, 1.0])
    r = obj(acc, np.array([6.0, 6.0, 6.0]), np.array([4.0, 4.0, 4.0]), a_max=1.0, e_ref=10.0)
    assert r["min_error"] == 0.0 and r["pareto_latency"] == pytest.approx(0.6)
    assert r["tac"] == pytest.approx(0.6 / 3) and r["pac"] == pytest.approx(10 * 0.6 / (3 * 10))
    assert r["loss"] == pytest.approx(10 * 0.6 / 3 + 100 * 0.6 / 3)


def test_objective_terms_sarnn_form():
    """SaRNN's code: TAC = P_l / a_ANN; PAC = Σ_t (a_ANN − a_t)·p_t / a_ANN on raw accumulates
    (MACs of the analog first layer left out); in chunks of c steps p_t is the chunk's mean
    events per step ÷ c."""
    acc = np.array([0.2, 0.6, 0.7, 0.8])
    acs, macs = np.array([100.0, 300.0, 200.0, 400.0]), np.full(4, 1e6)
    a_ann = 0.8
    gaps = a_ann - acc  # 0.6, 0.2, 0.1, 0.0
    per_step = AnytimeObjective(form="sarnn")(acc, acs, macs, a_max=a_ann, e_ref=123.0)
    assert per_step["min_error"] == pytest.approx(0.2)
    assert per_step["tac"] == pytest.approx(0.9 / 0.8)
    assert per_step["pac"] == pytest.approx((0.6 * 100 + 0.2 * 300 + 0.1 * 200) / 0.8)
    assert per_step["loss"] == pytest.approx(100 * 0.2 + 10 * 0.9 / 0.8 + 100 * 140 / 0.8)
    chunked = AnytimeObjective(form="sarnn", chunk=2)(acc, acs, macs, a_max=a_ann, e_ref=123.0)
    power = np.array([200.0, 200.0, 300.0, 300.0]) / 2  # chunk means (100+300)/2, (200+400)/2, ÷ 2
    assert chunked["pac"] == pytest.approx(float((gaps * power).sum()) / 0.8)
    whole = AnytimeObjective(form="sarnn", chunk=4)(acc, acs, macs, a_max=a_ann, e_ref=123.0)
    assert whole["pac"] == pytest.approx(0.9 * (1000 / 4) / 4 / 0.8)  # one chunk: P_l·ē/T / a_ANN
    with pytest.raises(ValueError, match="4 steps are not whole chunks of 3"):
        AnytimeObjective(form="sarnn", chunk=3)(acc, acs, macs, a_max=a_ann, e_ref=1.0)
    with pytest.raises(ValueError, match="unknown anytime objective form 'code'; use paper or sarnn"):
        AnytimeObjective(form="code")  # type: ignore[arg-type]


def test_sarnn_objective_drives_the_scaling(relu_digits):
    """The SaRNN form through the optimiser: it records its terms and does not raise the loss."""
    train_images, train_labels, _ = digits_split("train")
    cal = torch.from_numpy(digit_frames(train_images[:100], 16))[:, None]
    with torch.no_grad():
        ann_acc = float((relu_digits.ann(cal).argmax(1).numpy() == train_labels[:100]).mean())
    snn = convert(relu_digits.ann, (1, 16, 16), "data_norm", v0=0.5, calibration=cal)
    objective = AnytimeObjective(form="sarnn", chunk=2)
    result = optimize_scaling(snn, cal, train_labels[:100], 8, ann_acc, {"global": 6}, objective)
    losses = [h["loss"] for h in result.history]
    acc, acs, macs = simulate(snn, cal, train_labels[:100], 8)
    final = objective(acc, acs, macs, ann_acc, 1.0)["loss"]
    assert final <= losses[0] + 1e-9 and final == pytest.approx(min(losses))


def test_sparsity_penalties_follow_beta_and_weights():
    torch.manual_seed(0)
    model = digits_cnn(in_channels=1, size=16, activation="relu")
    penalty = SparsityPenalty(model, torch.rand(1, 1, 16, 16), activation=1.0, weight=1.0)
    la = penalty.activation_loss().item()
    assert la == pytest.approx(0.5, abs=1e-6)  # β = 0: half the activations are expected non-zero
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.fill_(-1.0)
    expected = 0.5 * (1 + float(torch.erf(torch.tensor(-1 / 2**0.5))))
    assert penalty.activation_loss().item() == pytest.approx(expected, rel=1e-5)
    lw = penalty.weight_loss().item()
    with torch.no_grad():
        model[0].weight.mul_(2)
    assert penalty.weight_loss().item() > lw
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = 1e-6
    assert prune_small_weights(model, 1e-4) >= 1 and model[0].weight[0, 0, 0, 0] == 0


def test_sparsity_fine_tuning_makes_activations_sparser(relu_digits, tmp_path, root):
    images, _, _ = digits_split("val")
    x = torch.from_numpy(digit_frames(images[:200], 16))[:, None]

    def nonzero_fraction(model):
        acts = []
        hooks = [
            m.register_forward_hook(lambda _m, _x, y: acts.append(y)) for m in model if isinstance(m, nn.ReLU)
        ]
        with torch.no_grad():
            model.eval()(x)
        for h in hooks:
            h.remove()
        return float(sum((a > 0).sum() for a in acts) / sum(a.numel() for a in acts))

    def fine_tune(activation: float, weight: float, name: str):
        overrides = [
            "model.activation=relu",
            "train.epochs=8",
            f"train.init_from={relu_digits.path}",
            "train.lr=0.003",
            f"train.sparsity_activation={activation}",
            f"train.sparsity_weight={weight}",
            "train.prune_epsilon=1e-4",
        ]
        cfg = load_train_config(root / "configs" / "digits_frames.yaml", overrides)
        result = train(cfg, output=tmp_path / name, progress=False)
        return result, load_checkpoint(str(tmp_path / name))

    _, plain = fine_tune(0.0, 0.0, "plain.pt")
    result, sparse = fine_tune(5.0, 0.5, "sparse.pt")
    assert nonzero_fraction(sparse.ann) < 0.85 * nonzero_fraction(plain.ann)  # same fine-tuning, no penalty
    assert result["val_accuracy_ann"] > 0.9 and "pruned_weights" in result


def test_pareto_latency_and_power():
    acc = [0.5, 0.8, 0.9]
    assert pareto_latency(0.9, acc) == pytest.approx(0.4 + 0.1)
    assert pareto_power(0.9, acc, [10, 20, 30]) == pytest.approx(10 * 0.4 + 20 * 0.1)
