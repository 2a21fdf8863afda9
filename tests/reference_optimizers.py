"""The table every optimizer test reads: each known rule, our settings, and the optimizer it must equal.

A reference is torch.optim's optimizer, the `adabound` package, or, for PowerSign and AddSign, the
equations of the NOS paper and its TF code, or for Lion the paper's algorithm, written out here
independently of the rule language.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

STEPS = 120
DECAY_T = 100.0  # shorter than the run, so the decays reach their end and rd restarts


class SignReference(torch.optim.Optimizer):
    """PowerSign / AddSign as in NOS (TF contrib): m <- beta*m + (1-beta)*g, no bias correction;
    PowerSign: w -= lr * e^(f(t) sign(g) sign(m)) * g; AddSign: w -= lr * (1 + f(t) sign(g) sign(m)) * g."""

    def __init__(self, params, lr: float, kind: str, decay: str | None, beta: float = 0.9,
                 T: float = DECAY_T, cd_periods: float = 0.5, rd_periods: float = 1.0) -> None:
        super().__init__(params, dict(lr=lr, beta=beta))
        self.kind, self.decay, self.T, self.n_cd, self.n_rd = kind, decay, T, cd_periods, rd_periods

    def f(self, t: int) -> float:
        T = self.T
        if self.decay is None:
            return 1.0
        if self.decay == "ld":
            return 1.0 - min(t, T) / T
        if self.decay == "cd":  # TF's cosine decay holds at its end value after T
            return 0.5 * (1.0 + math.cos(2.0 * math.pi * self.n_cd * min(t, T) / T))
        return 0.5 * (1.0 + math.cos(math.pi * math.fmod(self.n_rd * t, T) / T))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state["t"], state["m"] = 0, torch.zeros_like(p)
                state["t"] += 1
                g, m = p.grad, state["m"]
                m.mul_(group["beta"]).add_((1 - group["beta"]) * g)
                s = self.f(state["t"]) * torch.sign(g) * torch.sign(m)
                scale = torch.exp(s) if self.kind == "powersign" else 1.0 + s
                p.sub_(group["lr"] * scale * g)


class LionReference(torch.optim.Optimizer):
    """Lion as in Chen et al. 2023 (Algorithm 2), written out from the paper: c = beta1*m + (1-beta1)*g;
    w <- w - lr * (sign(c) + wd * w) (decoupled decay); m <- beta2*m + (1-beta2)*g."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.99), wd: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, wd=wd))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state["m"] = torch.zeros_like(p)
                g, m = p.grad, state["m"]
                c = beta1 * m + (1 - beta1) * g
                p.sub_(group["lr"] * (torch.sign(c) + group["wd"] * p))
                m.mul_(beta2).add_((1 - beta2) * g)


def _adabound(params, lr: float, amsbound: bool):
    import adabound  # test-only dependency; its deprecated tensor calls warn, and are filtered

    return adabound.AdaBound(params, lr=lr, final_lr=0.1, gamma=1e-3, amsbound=amsbound)


@dataclass(frozen=True)
class Case:
    rule: str
    lr: float
    reference: Callable[[list, float], torch.optim.Optimizer]
    hyper: dict = field(default_factory=dict)  # our optimizer's settings that match the reference's


def _sign_cases() -> dict[str, Case]:
    cases = {}
    for kind in ("powersign", "addsign"):
        for decay in (None, "ld", "cd", "rd"):
            name = kind if decay is None else f"{kind}_{decay}"
            cases[name] = Case(name, 0.02, lambda p, lr, k=kind, d=decay: SignReference(
                p, lr, k, d, rd_periods=2.0), dict(T=DECAY_T, rd_periods=2.0))
    return cases


CASES: dict[str, Case] = {
    "sgd": Case("sgd", 0.1, lambda p, lr: torch.optim.SGD(p, lr=lr)),
    "momentum": Case("momentum", 0.05, lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.8),
                     dict(beta1=0.8)),
    "nesterov": Case("nesterov", 0.05, lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True)),
    "adam": Case("adam", 0.01, lambda p, lr: torch.optim.Adam(p, lr=lr, betas=(0.8, 0.99), eps=1e-6),
                 dict(beta1=0.8, beta2=0.99, eps=1e-6)),
    "amsgrad": Case("amsgrad", 0.01, lambda p, lr: torch.optim.Adam(p, lr=lr, amsgrad=True)),
    "rmsprop": Case("rmsprop", 0.003, lambda p, lr: torch.optim.RMSprop(p, lr=lr, alpha=0.99, eps=1e-8),
                    dict(beta2=0.99)),
    "adabound": Case("adabound", 0.01, lambda p, lr: _adabound(p, lr, False)),
    "amsbound": Case("amsbound", 0.01, lambda p, lr: _adabound(p, lr, True)),
    **_sign_cases(),
    # No settings of ours: lion's own defaults (0.9, 0.99) must be the paper's.
    "lion": Case("lion", 0.003, lambda p, lr: LionReference(p, lr)),
}


def small_network(seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(dtype)


def batch(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(48, 6, generator=gen, dtype=dtype), torch.randint(0, 3, (48,), generator=gen)


def train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int = STEPS, scheduler=None,
          dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Full-batch training; returns all weights flattened."""
    x, y = batch(dtype)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x).double(), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def max_rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs() / b.abs().clamp_min(1e-12)).max().item()
