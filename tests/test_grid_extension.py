"""The KAN paper's grid-extension demo (kan-paper-toy) as shipped: RMSE falls with every finer grid."""

from __future__ import annotations

import statistics

import pytest
import torch

from kanlab.runs.experiment import build_model
from kanlab.study.config import load_study
from kanlab.study.experiments import expand
from kanlab.tasks import make_dataset
from kanlab.training.loop import train


@pytest.mark.slow
def test_kan_paper_toy_test_rmse_falls_at_every_grid_to_below_1e_4_at_grid_20() -> None:
    # The preset's protocol (grid updates, 200 LBFGS steps per grid, float64), grids 3 -> 5 -> 10
    # -> 20, on its three seeds: every seed's test RMSE falls by 1.3x or more at each finer grid,
    # and their median at grid 20 is below 1e-4 (PyKAN's tutorial: 5.4e-5; one seed lands near
    # 1.1e-4, the others near 3e-5). Without the grid updates the hidden layer's inputs leave its
    # grid and test RMSE stalls near 1.5e-4 from grid 10 on (issue 20).
    study = load_study("kan-paper-toy", ["train.grid_stages=[3, 5, 10, 20]"])
    finals = []
    for exp in (e for e in expand(study) if e.label == "KAN [2, 5, 1]"):
        history = train(build_model(exp), make_dataset(exp.task, torch.float64), exp.train)
        assert history.status == "finished"
        test = [s["test_rmse"] for s in history.stages]
        assert [s["grid_size"] for s in history.stages] == [3, 5, 10, 20]
        assert all(b < a / 1.3 for a, b in zip(test, test[1:], strict=False)), (exp.seed, test)
        finals.append(test[-1])
    assert len(finals) == 3 and statistics.median(finals) < 1e-4, finals


@pytest.mark.slow
def test_kan_paper_toy_minimal_kan_reaches_below_5e_6_at_grid_50_on_every_seed() -> None:
    # The paper's [2, 1, 1] on the preset's three seeds, grids 3 -> 50 (PyKAN's tutorial: 2.5e-6
    # at grid 50). With a grid update at step 0, as PyKAN's fit does, the untrained hidden node's
    # narrow initial range became the output layer's grid and seed 0 stalled near 0.6 at every
    # grid; the preset's first update waits for step 5.
    study = load_study("kan-paper-toy", ["train.grid_stages=[3, 5, 10, 20, 50]"])
    for exp in (e for e in expand(study) if e.label == "KAN [2, 1, 1]"):
        history = train(build_model(exp), make_dataset(exp.task, torch.float64), exp.train)
        test = [s["test_rmse"] for s in history.stages]
        assert history.status == "finished" and test[-1] < 5e-6, (exp.seed, test)
