"""Losses of every objective against hand-computed values, and the test-split metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import circmean

from latentzoo.latents import OBJECTIVES, Normalisation, encode_targets, output_layout
from latentzoo.training.metrics import latent_metrics
from latentzoo.training.objectives import objective_loss, task_losses

N_CAT, N_ID = 3, 4
#: Two samples with every latent; angles chosen so sin/cos are exact-ish and easy to check.
LATENTS = {"x": np.array([1.0, 3.0]), "y": np.array([0.0, 2.0]), "z": np.array([2.0, 4.0]),
           "rot_x": np.array([0.0, math.pi / 2]), "rot_y": np.array([math.pi, 0.0]),
           "rot_z": np.array([-math.pi / 2, 0.0]), "category": np.array([0, 2]), "identity": np.array([3, 1])}
NORM = Normalisation({"x": 2.0, "y": 1.0, "z": 3.0}, {"x": 1.0, "y": 1.0, "z": 1.0})


def hand_losses(outputs: np.ndarray) -> dict[str, float]:
    """Each task's loss for an 'all' head (layout 3 + 4 + 1 + 2 + 6), written out by hand."""
    o = outputs
    zx, zy, zz = LATENTS["x"] - 2, LATENTS["y"] - 1, LATENTS["z"] - 3   # z-scores (std 1)

    def ce(logits, label):
        return -logits[label] + math.log(sum(math.exp(v) for v in logits))

    angles = [LATENTS[n] for n in ("rot_x", "rot_y", "rot_z")]
    rot = []
    for k in range(3):
        l_sin = np.mean((o[:, 10 + k] - np.sin(angles[k])) ** 2)
        l_cos = np.mean((o[:, 13 + k] - np.cos(angles[k])) ** 2)
        rot.append((l_sin + l_cos) / 2)
    return {
        "category": np.mean([ce(o[i, 0:3], LATENTS["category"][i]) for i in range(2)]),
        "identity": np.mean([ce(o[i, 3:7], LATENTS["identity"][i]) for i in range(2)]),
        "distance": np.mean((o[:, 7] - zz) ** 2),
        "translation": (np.mean((o[:, 8] - zx) ** 2) + np.mean((o[:, 9] - zy) ** 2)) / 2,
        "rotation": np.mean(rot),
    }


@pytest.mark.parametrize("objective", [o for o in OBJECTIVES if OBJECTIVES[o]])
def test_every_objective_loss_matches_hand_computation(objective):
    rng = np.random.default_rng(0)
    full = rng.normal(size=(2, 16))  # an 'all' head's outputs; other objectives use its task columns
    expected = hand_losses(full)
    layout = output_layout(objective, N_CAT, N_ID)
    full_layout = {s.task: s for s in output_layout("all", N_CAT, N_ID)}
    outputs = np.concatenate([full[:, full_layout[s.task].start:full_layout[s.task].stop] for s in layout], axis=1)
    assert outputs.shape[1] == layout[-1].stop
    targets = {t: torch.from_numpy(v) for t, v in encode_targets(LATENTS, layout, NORM).items()}
    loss, losses = objective_loss(torch.from_numpy(outputs).float(), targets, layout)
    assert list(losses) == [s.task for s in layout]
    for task, value in losses.items():
        assert float(value) == pytest.approx(expected[task], rel=1e-5)
    assert float(loss) == pytest.approx(np.mean([expected[s.task] for s in layout]), rel=1e-5)


def test_loss_is_zero_for_perfect_outputs_and_positive_otherwise():
    layout = output_layout("distance-translation-rotation")
    targets = encode_targets(LATENTS, layout, NORM)
    perfect = torch.from_numpy(np.concatenate([targets[s.task] for s in layout], axis=1))
    loss, _ = objective_loss(perfect, {t: torch.from_numpy(v) for t, v in targets.items()}, layout)
    assert float(loss) == pytest.approx(0.0, abs=1e-7)
    worse, _ = objective_loss(perfect + 1, {t: torch.from_numpy(v) for t, v in targets.items()}, layout)
    assert float(worse) == pytest.approx(1.0, rel=1e-6)  # every unit off by one -> every MSE is 1


def test_loss_gradient_flows_only_into_the_task_units():
    layout = output_layout("distance", N_CAT, N_ID)
    outputs = torch.zeros(2, 1, requires_grad=True)
    targets = {t: torch.from_numpy(v) for t, v in encode_targets(LATENTS, layout, NORM).items()}
    task_losses(outputs, targets, layout)["distance"].backward()
    # d/do mean((o - t)^2) = 2 (o - t) / N with t = z-scores (-1, 1)
    assert outputs.grad[:, 0].tolist() == pytest.approx([1.0, -1.0])


def test_reference_objectives_have_nothing_to_train():
    with pytest.raises(ValueError, match="no task"):
        objective_loss(torch.zeros(2, 1000), {}, output_layout("untrained"))


def test_latent_metrics_by_hand():
    true = {"z": np.array([1.0, 2.0, 3.0]), "rot_x": np.array([3.1, -3.1, 0.0]),
            "category": np.array([0, 1, 2])}
    pred = {"z": np.array([1.0, 2.0, 4.0]), "rot_x": np.array([-3.1, 3.1, 0.3]),
            "category": np.array([0, 2, 2])}
    m = latent_metrics(pred, true)
    assert m["z_rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert m["z_r2"] == pytest.approx(1 - 1 / 2)            # SS_res 1, SS_tot 2
    # 3.1 vs -3.1 is 2*pi - 6.2 = 0.0832 apart, not 6.2 (wrapped)
    assert m["rot_x_mae"] == pytest.approx((2 * (2 * math.pi - 6.2) + 0.3) / 3)
    # circular R^2 against scipy's circular mean: deviations 3.1 - pi, -3.1 + pi and -pi from the mean pi
    mean = circmean(true["rot_x"], high=np.pi, low=-np.pi)
    assert abs(mean) == pytest.approx(math.pi)  # -pi and pi are the same direction
    ss_tot = 2 * (math.pi - 3.1) ** 2 + math.pi ** 2
    assert m["rot_x_r2"] == pytest.approx(1 - (2 * (2 * math.pi - 6.2) ** 2 + 0.3 ** 2) / ss_tot)
    assert m["category_top1"] == pytest.approx(2 / 3)


def test_predicting_the_mean_scores_r2_zero():
    z = np.random.default_rng(1).uniform(1, 4, 500)
    m = latent_metrics({"z": np.full_like(z, z.mean())}, {"z": z})
    assert m["z_r2"] == pytest.approx(0.0, abs=1e-12)
    assert m["z_rmse"] == pytest.approx(z.std())


def test_predicting_the_circular_mean_scores_angle_r2_zero_across_the_wrap():
    # angles around +-pi: the plain mean (about 0) would be the worst guess; the circular mean is pi
    angle = np.angle(np.exp(1j * (np.pi + np.random.default_rng(2).uniform(-0.5, 0.5, 400))))
    mean = circmean(angle, high=np.pi, low=-np.pi)
    assert latent_metrics({"rot_y": np.full_like(angle, mean)}, {"rot_y": angle})["rot_y_r2"] == pytest.approx(0, abs=1e-9)
    assert latent_metrics({"rot_y": angle + 0.05}, {"rot_y": angle})["rot_y_r2"] > 0.95
    assert latent_metrics({"rot_y": np.zeros_like(angle)}, {"rot_y": angle})["rot_y_r2"] < -30
