"""kanlab.training.lbfgs.LBFGS against torch.optim.LBFGS(line_search_fn="strong_wolfe") and closed forms."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from kanlab.training.lbfgs import LBFGS

Closure = Callable[[], torch.Tensor]


def rosenbrock(opt_cls: type[torch.optim.Optimizer], steps: int,
               **kw: object) -> tuple[list[float], torch.Tensor]:
    x = torch.tensor([-1.2, 1.0, -0.5, 0.8, 1.3, -0.7], dtype=torch.float64, requires_grad=True)
    opt = opt_cls([x], history_size=10, max_iter=20, **kw)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        f = (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
        f.backward()
        return f

    losses = []
    for _ in range(steps):
        opt.step(closure)  # type: ignore[no-untyped-call]
        losses.append(float(closure().detach()))
    return losses, x.detach()


def test_rosenbrock_follows_torchs_lbfgs_to_the_minimum() -> None:
    ours, x = rosenbrock(LBFGS, 4)
    theirs, _ = rosenbrock(torch.optim.LBFGS, 4, line_search_fn="strong_wolfe")
    # The same method: the same losses step by step (to round-off while far from the minimum) ...
    torch.testing.assert_close(torch.tensor(ours[:2]), torch.tensor(theirs[:2]), rtol=1e-8, atol=0)
    # ... and the same minimum, x = (1, ..., 1).
    assert ours[-1] < 1e-9 and theirs[-1] < 1e-9
    torch.testing.assert_close(x, torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-4)


def test_least_squares_over_several_parameters_reaches_the_normal_equations() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(50, 8, generator=gen, dtype=torch.float64)
    b = torch.randn(50, 1, generator=gen, dtype=torch.float64)
    model = torch.nn.Linear(8, 1).double()
    opt = LBFGS(model.parameters(), history_size=5, tolerance_grad=1e-12, tolerance_change=0)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((model(a) - b) ** 2).mean()
        loss.backward()
        return loss

    kept = []
    remember = opt._remember

    def counting(state, *args):  # type: ignore[no-untyped-def]
        remember(state, *args)
        kept.append(len(state["order"]))

    opt._remember = counting  # type: ignore[method-assign]
    for _ in range(3):
        opt.step(closure)
    design = torch.cat([a, torch.ones(50, 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(design, b).solution.squeeze(1)
    # to the accuracy a line search on the loss can see: sqrt(machine epsilon)
    torch.testing.assert_close(torch.cat([model.weight.detach()[0], model.bias.detach()]), solution,
                               rtol=1e-6, atol=1e-7)
    # history capped at history_size (dropped at the end, where round-off stops every decrease)
    assert max(kept) == 5


def test_step_returns_the_first_loss_and_stops_at_a_stationary_point() -> None:
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = LBFGS([x])
    calls = []

    def closure() -> torch.Tensor:
        opt.zero_grad()
        f = (x**2).sum() + 2.0
        f.backward()
        calls.append(float(f.detach()))
        return f

    assert float(opt.step(closure).detach()) == 2.0
    assert calls == [2.0]  # zero gradient: no line search


def test_a_parameter_changed_between_steps_is_read_afresh() -> None:
    # The training loop's grid updates rewrite coefficients in place between steps.
    x = torch.tensor([3.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = LBFGS([x], max_iter=1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        f = ((x - 1.0) ** 2).sum()
        f.backward()
        return f

    opt.step(closure)
    with torch.no_grad():
        x.fill_(5.0)
    assert float(opt.step(closure).detach()) == pytest.approx(32.0)  # evaluated where x is now


def test_unused_parameters_keep_their_values() -> None:
    used = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    unused = torch.tensor([7.0], dtype=torch.float64, requires_grad=True)
    opt = LBFGS([used, unused])

    def closure() -> torch.Tensor:
        opt.zero_grad()
        f = (used**2).sum()
        f.backward()
        return f

    opt.step(closure)
    assert abs(float(used.detach())) < 1e-6 and float(unused.detach()) == 7.0


@pytest.mark.parametrize(("kw", "match"), [({"lr": 0.0}, "lr must be > 0"),
                                           ({"history_size": 0}, "history_size must be >= 1")])
def test_bad_settings_are_refused(kw: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LBFGS([torch.zeros(1, requires_grad=True)], **kw)  # type: ignore[arg-type]


def test_one_parameter_group_only() -> None:
    a, b = (torch.zeros(1, requires_grad=True) for _ in range(2))
    with pytest.raises(ValueError, match="one parameter group"):
        LBFGS([{"params": [a]}, {"params": [b]}])


def least_squares(scale: float, opt_cls: type[torch.optim.Optimizer], **kw: object) -> tuple[float, int]:
    """Relative error of the solution after 3 steps on scale * mean squared residual, and the
    closure calls it took."""
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(40, 6, generator=gen, dtype=torch.float64) @ torch.diag(
        torch.tensor([1.0, 2.0, 3.0, 5.0, 8.0, 13.0], dtype=torch.float64))
    want = torch.randn(6, generator=gen, dtype=torch.float64)
    b = a @ want                                              # consistent: the minimum loss is 0
    x = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    opt = opt_cls([x], history_size=10, max_iter=20, **kw)
    calls = [0]

    def closure() -> torch.Tensor:
        calls[0] += 1
        opt.zero_grad()
        loss = scale * ((a @ x - b) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)  # type: ignore[no-untyped-call]
    return float((x.detach() - want).norm() / want.norm()), calls[0]


@pytest.mark.parametrize("scale", [1.0, 1e-8, 1e-16])
def test_stopping_rules_mean_the_same_at_every_loss_scale(scale: float) -> None:
    # The same problem at a loss scale of 1, 1e-8 and 1e-16 (an MSE of 1e-8 is where the KAN
    # paper's toy gets to): kanlab's relative tolerances solve each to round-off ...
    error, calls = least_squares(scale, LBFGS)
    assert error < 1e-10, (scale, error)
    assert calls <= 60
    # ... torch's absolute ones (tolerance_change 1e-9, curvature pairs only when y.s > 1e-10)
    # stop a small loss after a step or two: where kanlab's LBFGS stalled before its rules were
    # relative.
    torch_error, _ = least_squares(scale, torch.optim.LBFGS, line_search_fn="strong_wolfe")
    assert (torch_error < 1e-4) == (scale == 1.0), (scale, torch_error)


def test_tolerance_grad_is_relative_to_the_first_gradient_and_zero_runs_on() -> None:
    x = torch.tensor([4.0, -3.0], dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([1.0, 100.0], dtype=torch.float64)

    def run(**kw: float) -> tuple[list[float], LBFGS]:
        with torch.no_grad():
            x.copy_(torch.tensor([4.0, -3.0]))
        opt = LBFGS([x], max_iter=50, **kw)
        grads: list[float] = []

        def closure() -> torch.Tensor:
            opt.zero_grad()
            f = 1e-12 * (weights * (x - 1.0) ** 2).sum()  # tiny: an absolute tolerance would stop at once
            f.backward()
            assert x.grad is not None
            grads.append(float(x.grad.abs().max()))
            return f

        opt.step(closure)
        return grads, opt

    grads, opt = run(tolerance_grad=1e-3, tolerance_change=0.0)
    assert grads[-1] <= 1e-3 * grads[0] < min(grads[:-1])  # stopped at the first gradient that small
    grads, _ = run(tolerance_grad=0.0, tolerance_change=0.0)
    assert grads[-1] < 1e-12 * grads[0]  # on to round-off


def test_tolerances_must_be_non_negative() -> None:
    with pytest.raises(ValueError, match="tolerances must be >= 0"):
        LBFGS([torch.zeros(1, requires_grad=True)], tolerance_change=-1.0)


def test_a_failed_line_search_drops_the_history_instead_of_stalling_for_good() -> None:
    # An L1 term (the sparsity regulariser's kind): at a kink the curvature pairs stop describing
    # the objective and the quasi-Newton direction finds no decrease. Kept, the pairs gave the same
    # direction at every later step (stuck 1.7 % above the minimum here); dropped, the search goes
    # on along -g. Reference minimum: proximal gradient (ISTA) run to convergence in numpy.
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, dtype=torch.float64, generator=gen)
    c = torch.randn(6, dtype=torch.float64, generator=gen)
    x = torch.nn.Parameter(torch.randn(6, dtype=torch.float64, generator=gen))
    opt = LBFGS([x], lr=1.0, max_iter=20, history_size=10)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = 0.05 * ((a @ x - c) ** 2).sum() + x.abs().sum()
        loss.backward()
        return loss

    for _ in range(60):
        opt.step(closure)
    an, cn = a.numpy(), c.numpy()
    step = 1 / (0.1 * np.linalg.norm(an, 2) ** 2)
    z = np.zeros(6)
    for _ in range(20_000):
        z = z - step * 0.1 * an.T @ (an @ z - cn)
        z = np.sign(z) * np.maximum(np.abs(z) - step, 0)
    best = 0.05 * np.sum((an @ z - cn) ** 2) + np.abs(z).sum()
    with torch.no_grad():
        reached = float(0.05 * ((a @ x - c) ** 2).sum() + x.abs().sum())
    assert best <= reached < best * (1 + 1e-4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_numpy_vectors_on_the_cpu_follow_the_tensor_formulation(dtype: torch.dtype) -> None:
    # On the CPU a step keeps its flat vectors and history in numpy (cheaper per operation); the
    # tensor formulation (LBFGS.host_vectors = False, what other devices run) is the reference:
    # the same losses step by step to round-off, and the history really is numpy's.
    def run(host: bool) -> tuple[list[float], LBFGS]:
        x = torch.tensor([-1.2, 1.0, -0.5, 0.8, 1.3, -0.7], dtype=dtype, requires_grad=True)
        opt = LBFGS([x], history_size=5, max_iter=10)
        opt.host_vectors = host

        def closure() -> torch.Tensor:
            opt.zero_grad()
            f = (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
            f.backward()
            return f

        return [float(opt.step(closure).detach()) for _ in range(3)], opt

    (ours, opt), (theirs, ref) = run(True), run(False)
    rtol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(theirs), rtol=rtol, atol=0)
    assert ours[-1] < ours[0] / 10  # and it did descend
    pairs = opt.state[opt._params[0]]["pairs"]
    assert isinstance(pairs, np.ndarray) and pairs.dtype == torch.empty(0, dtype=dtype).numpy().dtype
    assert isinstance(ref.state[ref._params[0]]["pairs"], torch.Tensor)
