"""kanlab.training.native_objective: the MSE (plus the sparsity term) and its flat gradient from the native
kernels, against autograd on the same model; where it refuses; LBFGS and train() on it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from kanlab.layers.kan import native_build
from kanlab.models.stack import KAN, MLP, Stack
from kanlab.training import native_objective
from kanlab.training.config import TrainConfig
from kanlab.training.lbfgs import LBFGS
from kanlab.training.loop import train
from kanlab.training.native_objective import mse_objective
from kanlab.training.regularization import sparsity_loss, sparsity_of_means, sparsity_slope

pytestmark = pytest.mark.skipif(not native_build.available(torch.float64),
                                reason="no C compiler builds the native kernels here")


def data(n: int = 200, d: int = 2, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    x = torch.rand(n, d, generator=g, dtype=torch.float64) * 2.4 - 1.2  # some points off the grid
    y = torch.sin(3 * x[:, :1]) * x[:, 1:2] + 0.1
    return x.to(dtype), y.to(dtype)


def autograd_reference(model: torch.nn.Module, params: list[torch.Tensor], x: torch.Tensor,
                       y: torch.Tensor, sparsity: float = 0.0, l1: float = 1.0,
                       entropy: float = 2.0) -> tuple[float, torch.Tensor]:
    # train()'s closure: the MSE plus sparsity * the regulariser on the model's edge responses
    loss = torch.mean((model(x) - y) ** 2)
    if sparsity:
        loss = loss + sparsity * sparsity_loss(model, x, l1, entropy)
    grads = torch.autograd.grad(loss, params)
    return float(loss.detach()), torch.cat([g.reshape(-1) for g in grads])


def assert_matches_autograd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                            **sparsity: float) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    objective = mse_objective(model, params, x, y, **sparsity)
    assert objective is not None
    loss, grad = objective(torch.cat([p.detach().reshape(-1) for p in params]))
    want_loss, want_grad = autograd_reference(model, params, x, y, **sparsity)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    torch.testing.assert_close(grad, want_grad, rtol=1e-11, atol=1e-12 * want_grad.abs().max().item())


@pytest.mark.parametrize("options", [{}, {"bias": False, "spline_weight": False},
                                     {"base": "tanh", "base_weight": False}, {"base": None},
                                     {"base": "identity", "order": 5, "grid_size": 9}], ids=str)
@pytest.mark.parametrize("threads", [1, 2], ids=["one-thread", "two-threads"])
def test_loss_and_gradient_equal_autograds(options: dict[str, object], threads: int,
                                           request: pytest.FixtureRequest) -> None:
    if threads == 2:  # samples split over two threads, each with its own gradient sums
        request.getfixturevalue("many_threads")
    model = KAN([2, 4, 3, 1], init="uniform", **options).double()  # type: ignore[arg-type]
    params = list(model.parameters())
    x, y = data(n=700)  # 6 chunks of 128 samples
    objective = mse_objective(model, params, x, y)
    assert objective is not None
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    loss, grad = objective(flat)
    want_loss, want_grad = autograd_reference(model, params, x, y)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    torch.testing.assert_close(grad, want_grad, rtol=1e-11, atol=1e-12 * want_grad.abs().max().item())


def test_on_moved_grids_and_after_they_move_again() -> None:
    # Grid updates (quantile knots) between LBFGS steps: the objective reads each layer's grid as
    # it is at the call, through the cell tables the kernels find moved knots with.
    from kanlab.training.loop import update_grids

    model = KAN([2, 4, 1], init="uniform").double()
    params = list(model.parameters())
    x, y = data(n=300)
    objective = mse_objective(model, params, x, y)
    assert objective is not None
    for eps in (0.0, 0.5):
        update_grids(model, x**3, grid_eps=eps)  # skewed: far from uniform
        assert not any(layer.uniform for layer in model.layers)
        assert all(layer.resolved_path() == "native" for layer in model.layers)
        loss, grad = objective(torch.cat([p.detach().reshape(-1) for p in params]))
        want_loss, want_grad = autograd_reference(model, params, x, y)
        assert loss == pytest.approx(want_loss, rel=1e-12)
        torch.testing.assert_close(grad, want_grad, rtol=1e-11, atol=1e-12 * want_grad.abs().max().item())


# (l1, entropy) of the sparsity term: both, one of them, neither (then only the sparsity weight's 0 * ...)
SPARSITY_WEIGHTS = [(1.0, 2.0), (0.0, 2.0), (0.7, 0.0), (0.0, 0.0)]


@pytest.mark.parametrize("options", [{}, {"bias": False, "spline_weight": False},
                                     {"base": "tanh", "base_weight": False}, {"base": None},
                                     {"base": "identity", "order": 2, "grid_size": 4},
                                     {"order": 5, "grid_size": 9}], ids=str)
@pytest.mark.parametrize(("l1", "entropy"), SPARSITY_WEIGHTS, ids=str)
def test_with_sparsity_loss_and_gradient_equal_autograds(options: dict[str, object], l1: float,
                                                         entropy: float) -> None:
    # The kernels' per-edge |r| sums and sign(r) terms against autograd through edge_responses:
    # three layers, so a layer's term also reaches the layers before it through their outputs.
    torch.manual_seed(1)
    model = KAN([2, 4, 3, 1], init="uniform", **options).double()  # type: ignore[arg-type]
    x, y = data(n=300)
    assert_matches_autograd(model, x, y, sparsity=0.3, l1=l1, entropy=entropy)


@pytest.mark.usefixtures("many_threads")
def test_with_sparsity_on_moved_grids_over_two_threads_and_the_same_twice() -> None:
    # Each thread sums its samples' |r| into its own copy, added in a fixed order: the same bits
    # every call at a given thread count.
    from kanlab.training.loop import update_grids

    model = KAN([2, 4, 1], init="uniform").double()
    x, y = data(n=700)  # 6 chunks of 128 samples
    update_grids(model, x**3, grid_eps=0.0)
    assert not any(layer.uniform for layer in model.layers)
    assert_matches_autograd(model, x, y, sparsity=0.05)
    params = list(model.parameters())
    objective = mse_objective(model, params, x, y, sparsity=0.05)
    assert objective is not None
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    (loss, grad), (again, grad_again) = objective(flat), objective(flat)
    assert loss == again and torch.equal(grad, grad_again)


def test_an_edge_that_is_zero_everywhere_gets_no_pull_from_the_l1() -> None:
    # |r| has no slope at r = 0 (autograd's abs takes sign(0) = 0): the zeroed edges' parameters
    # get the MSE's gradient only, although the entropy's slope is steepest at A = 0.
    model = KAN([2, 3, 1], init="uniform").double()
    with torch.no_grad():
        for layer in model.layers:
            layer.coef[0, 1].zero_()
            layer.base_weight[0, 1] = 0.0
    x, y = data()
    assert_matches_autograd(model, x, y, sparsity=0.5)


@pytest.mark.parametrize("zeros", ["one", "all"])
@pytest.mark.parametrize(("l1", "entropy"), SPARSITY_WEIGHTS, ids=str)
def test_sparsity_slope_is_the_gradient_of_the_term(zeros: str, l1: float, entropy: float) -> None:
    a = torch.rand(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    if zeros == "all":
        a.zero_()  # total 0: p = 0 / EPS
    else:
        a[1, 2], a[3, 0] = 0.0, 1e-9
    a.requires_grad_(True)
    term = sparsity_of_means(a, l1, entropy)
    (want,) = torch.autograd.grad(term, a)
    value, slope = sparsity_slope(a.detach().numpy(), l1, entropy)
    assert value == pytest.approx(term.item(), rel=1e-13, abs=1e-15)
    np.testing.assert_allclose(slope, want.numpy(), rtol=1e-12, atol=1e-14 * float(want.abs().max()))


def test_reads_the_flat_vector_not_the_model_and_skips_frozen_parameters() -> None:
    model = KAN([2, 3, 1]).double()
    model.layers[0].coef.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    x, y = data()
    objective = mse_objective(model, params, x, y)
    assert objective is not None
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for p in moved.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    moved_params = [p for p in moved.parameters() if p.requires_grad]
    loss, grad = objective(torch.cat([p.detach().reshape(-1) for p in moved_params]))
    want_loss, want_grad = autograd_reference(moved, moved_params, x, y)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    torch.testing.assert_close(grad, want_grad, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("sparsity", [0.0, 0.1])
def test_float32_matches_autograd_in_float32(sparsity: float) -> None:
    model = KAN([2, 5, 1])
    params = list(model.parameters())
    x, y = data(dtype=torch.float32)
    objective = mse_objective(model, params, x, y, sparsity=sparsity)
    assert objective is not None
    loss, grad = objective(torch.cat([p.detach().reshape(-1) for p in params]))
    want_loss, want_grad = autograd_reference(model, params, x, y, sparsity)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    torch.testing.assert_close(grad, want_grad, rtol=1e-5, atol=1e-5 * want_grad.abs().max().item())


class Residual(Stack):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + x[:, :1]


def test_refuses_what_it_cannot_compute() -> None:
    x, y = data()
    kan = KAN([2, 5, 1]).double()
    params = list(kan.parameters())
    assert mse_objective(kan, params, x, y) is not None
    assert mse_objective(MLP([2, 5, 1]).double(), list(MLP([2, 5, 1]).double().parameters()), x, y) is None
    wide = KAN([2, 16, 16, 1]).double()                                  # 16 -> 16 runs "dense"
    assert mse_objective(wide, list(wide.parameters()), x, y) is None
    assert mse_objective(kan, [*params, torch.zeros(3, dtype=torch.float64)], x, y) is None  # not its own
    assert mse_objective(kan, params[1:], x, y) is None                  # a trained one missing
    assert mse_objective(kan, params, x.float(), y.float()) is None      # another dtype
    assert mse_objective(kan, params, x, y[:10]) is None                 # mismatched targets
    residual = Residual(kan.layers)                                      # a forward of its own
    assert mse_objective(residual, list(residual.parameters()), x, y) is None


def test_a_wrong_vector_or_a_refined_model_is_refused_before_the_kernels_read_it() -> None:
    model = KAN([2, 3, 1]).double()
    params = list(model.parameters())
    x, y = data()
    objective = mse_objective(model, params, x, y)
    assert objective is not None
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    with pytest.raises(ValueError, match=f"flat CPU torch.float64 vector of {flat.numel()} parameters"):
        objective(flat[:-1])
    with pytest.raises(ValueError, match="got .* torch.float32"):
        objective(flat.float())
    model.layers[0].refine(8)
    with pytest.raises(RuntimeError, match="refine.*build a new one"):
        objective(flat)


def test_lbfgs_on_the_objective_follows_lbfgs_on_a_closure() -> None:
    x, y = data()
    runs = []
    for use_objective in (True, False):
        torch.manual_seed(0)
        model = KAN([2, 5, 1]).double()
        opt = LBFGS(model.parameters(), history_size=10)

        def closure(model: torch.nn.Module = model, opt: LBFGS = opt) -> torch.Tensor:
            opt.zero_grad()
            loss = torch.mean((model(x) - y) ** 2)
            loss.backward()
            return loss

        losses = []
        for _ in range(3):
            if use_objective:
                objective = mse_objective(model, opt.param_groups[0]["params"], x, y)
                losses.append(float(opt.step(objective=objective)))
            else:
                losses.append(float(opt.step(closure).detach()))
        runs.append((losses, torch.cat([p.detach().reshape(-1) for p in model.parameters()])))
    (a, pa), (b, pb) = runs
    torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-9, atol=0)
    torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-8)


def test_lbfgs_step_takes_a_closure_or_an_objective() -> None:
    opt = LBFGS([torch.zeros(2, requires_grad=True)])
    with pytest.raises(ValueError, match="a closure or an objective"):
        opt.step()


def test_train_uses_it_for_full_batch_lbfgs(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = data(300)

    class Toy:
        x_train, y_train, x_test, y_test = x, y, x[:50], y[:50]

    used: list[bool] = []

    def spy(*args: object, **kwargs: float) -> object:
        objective = mse_objective(*args, **kwargs)  # type: ignore[arg-type]
        used.append(objective is not None)
        return objective

    monkeypatch.setattr(native_objective, "mse_objective", spy)
    histories = []
    for clip in (None, 1e30):  # any gradient clipping needs the closure
        torch.manual_seed(0)
        cfg = TrainConfig(optimizer="lbfgs", lr=1.0, dtype="float64", steps=4, eval_every=1, grad_clip=clip)
        histories.append(train(KAN([2, 5, 1]), Toy(), cfg))
    assert used == [True] * 4  # the clipped run never asked
    fused, plain = ([r["train_loss"] for r in h.records] for h in histories)
    assert fused[-1] < 0.2 * fused[0]
    torch.testing.assert_close(torch.tensor(fused), torch.tensor(plain), rtol=1e-8, atol=0)


def test_train_with_sparsity_takes_it_and_follows_the_autograd_closure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The sparsify stage of the symbolic workflow: full-batch LBFGS with sparsity and grid updates,
    # on the objective, against the same run with the objective refused (train()'s autograd closure).
    x, y = data(300)

    class Toy:
        x_train, y_train, x_test, y_test = x, y, x[:50], y[:50]

    asked: list[tuple[bool, float]] = []

    def spy(*args: object, **kwargs: float) -> object:
        objective = mse_objective(*args, **kwargs)  # type: ignore[arg-type]
        asked.append((objective is not None, kwargs["sparsity"]))
        return objective

    # 3 steps, grids moved before the first and the third: LBFGS magnifies round-off 100-1000 times
    # a step (it does as much between two runs on the closure with the data changed by one ulp)
    cfg = TrainConfig(optimizer="lbfgs", lr=1.0, dtype="float64", steps=3, eval_every=1, sparsity=0.01,
                      sparsity_l1=0.5, sparsity_entropy=1.5, grid_update_every=2, grid_update_until=3)
    runs = []
    for refuse in (False, True):
        monkeypatch.setattr(native_objective, "mse_objective", (lambda *a, **k: None) if refuse else spy)
        torch.manual_seed(0)
        model = KAN([2, 5, 1])
        history = train(model, Toy(), cfg)
        runs.append(([r["train_loss"] for r in history.records], torch.cat([p.detach().reshape(-1)
                                                                           for p in model.parameters()])))
    assert asked == [(True, 0.01)] * 3
    (fused, p_fused), (plain, p_plain) = runs
    assert fused[-1] < 0.5 * fused[0]
    torch.testing.assert_close(torch.tensor(fused, dtype=torch.float64),
                               torch.tensor(plain, dtype=torch.float64), rtol=1e-8, atol=0)
    torch.testing.assert_close(p_fused, p_plain, rtol=1e-6, atol=1e-8)


def test_with_sparsity_the_hand_objective_is_not_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    # hand_objective (stacks with symbolic layers) computes the MSE alone: with a sparsity term
    # lbfgs_step must fall back to the closure, which adds the term.
    asked: list[float] = []
    monkeypatch.setattr(native_objective, "hand_objective", lambda *args: asked.append(1.0))
    x, y = data()
    model = MLP([2, 5, 1]).double()  # neither objective covers it: the closure steps
    opt = LBFGS(model.parameters())

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.mean((model(x) - y) ** 2)
        loss.backward()
        return loss

    native_objective.lbfgs_step(opt, model, x, y, closure, sparsity=0.1)
    assert asked == []
    native_objective.lbfgs_step(opt, model, x, y, closure)
    assert asked == [1.0]


def test_calls_at_other_points_keep_each_gradient_and_follow_thread_changes() -> None:
    # The objective prepares the kernels' arguments once, over buffers of its own: a later call
    # (at another point, on another thread count, after a grid update) must not change a gradient
    # already returned, and each must equal autograd's at its own point.
    from kanlab.training.loop import update_grids

    model = KAN([2, 3, 2]).double()
    params = list(model.parameters())
    x, y = data(n=150)
    y = torch.cat([y, -y], 1)
    objective = mse_objective(model, params, x, y, sparsity=0.02)
    assert objective is not None
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    other = flat + 0.1 * torch.randn(flat.shape, generator=torch.Generator().manual_seed(0), dtype=flat.dtype)
    before = torch.get_num_threads()
    try:
        first_loss, first = objective(flat)
        torch.set_num_threads(2)
        second_loss, second = objective(other)
    finally:
        torch.set_num_threads(before)
    want_loss, want = autograd_reference(model, params, x, y, sparsity=0.02)
    assert first_loss == pytest.approx(want_loss, rel=1e-12)
    torch.testing.assert_close(first, want, rtol=1e-11, atol=1e-12 * want.abs().max().item())
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(other, params)
    want_loss, want = autograd_reference(model, params, x, y, sparsity=0.02)
    assert second_loss == pytest.approx(want_loss, rel=1e-12)
    torch.testing.assert_close(second, want, rtol=1e-11, atol=1e-12 * want.abs().max().item())
    update_grids(model, x**3)  # moved knots: the arguments are prepared again
    third_loss, _ = objective(other)
    assert third_loss == pytest.approx(autograd_reference(model, params, x, y, sparsity=0.02)[0], rel=1e-12)
