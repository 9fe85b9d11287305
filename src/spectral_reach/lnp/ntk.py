"""Explicit-eNTK oracle for small models (torch.func): the reference that LNP must match.

``J`` stacks the per-sample Jacobians ``J_i = df_i/dtheta`` (rows: sample-major, then output
coordinate; columns: trainable parameters in ``model.parameters()`` order). With ``g`` the
output gradient of the mean loss:

    Theta_{B'B} = J_{B'} J_B^T,       delta = g_{B'}^T Theta_{B'B} g_B
    chi_pos (B = B') = g^T Theta g / (||g||^2 tr Theta) = sum_k lhat_k chat_k^2,
    lhat_k = lambda_k / tr Theta,     chat_k^2 = (v_k . g)^2 / ||g||^2.

Everything here forms ``J`` explicitly: memory ``N D P``; for tests and small checks only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev


def jacobian(model: nn.Module, inputs: Tensor, method: str = "jacrev") -> Tensor:
    """``J`` of shape ``(b * D, P)`` over the trainable parameters, by reverse mode.

    ``method="jacrev"``: torch.func over ``functional_call``. ``"autograd"``: one plain backward
    pass per output coordinate on the model as it is, for models that ``functional_call``
    cannot run (mup's ``MuReadout`` reads attributes that only its own parameters carry).
    """
    if method == "autograd":
        params = [p for p in model.parameters() if p.requires_grad]
        out = model(inputs).reshape(-1)
        rows = []
        for k in range(out.numel()):
            grads = torch.autograd.grad(out[k], params, retain_graph=True, allow_unused=True)
            rows.append(
                torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])
            )
        return torch.stack(rows).detach()
    if method != "jacrev":
        raise ValueError(f"method must be 'jacrev' or 'autograd', not {method!r}")
    named = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def f(params: dict[str, Tensor]) -> Tensor:
        return functional_call(model, params, (inputs,))

    jac = jacrev(f)(named)
    out_numel = f(named).numel()
    return torch.cat([jac[n].reshape(out_numel, -1) for n in named], dim=1)


def output_gradient(loss_fn, outputs: Tensor, targets: Tensor) -> Tensor:
    """``g = dL/df`` flattened to ``(b * D,)``."""
    outputs = outputs.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(loss_fn(outputs, targets), outputs)
    return g.reshape(-1)


def entk(j_a: Tensor, j_b: Tensor) -> Tensor:
    """``Theta_{ab} = J_a J_b^T``."""
    return j_a @ j_b.T


@dataclass(frozen=True)
class Spectrum:
    """Eigen-view of a full-batch eNTK against a loss gradient, eigenvalues descending."""

    lhat: Tensor  # lambda_k / tr Theta
    chat_sq: Tensor  # (v_k . g)^2 / ||g||^2

    @property
    def chi_pos(self) -> float:
        return float((self.lhat * self.chat_sq).sum())


def spectrum(theta: Tensor, g: Tensor) -> Spectrum:
    """Eigendecomposition of a symmetric eNTK and the projections of ``g`` on its eigenvectors."""
    lam, vecs = torch.linalg.eigh(theta)
    order = torch.argsort(lam, descending=True)
    lam, vecs = lam[order], vecs[:, order]
    return Spectrum(lam / lam.sum(), (vecs.T @ g).pow(2) / g.pow(2).sum())


@dataclass(frozen=True)
class Reference:
    """Raw LNP components from explicit Jacobians."""

    delta: float
    chi_loss_raw: float
    chi_net_raw: float
    chi_pos: float
    j_sq_per_sample: Tensor  # ||J_i||_F^2 on B
    g_sq: float
    j_sq: float


def reference_lnp(model: nn.Module, loss_fn, batch, measure_batch=None, method: str = "jacrev") -> Reference:
    """LNP of ``batch`` -> ``measure_batch`` (self variant if ``None``) from explicit Jacobians.

    Sums and products run in float64 whatever the model's dtype; ``method`` as in :func:`jacobian`.
    """
    sides = []
    for inputs, targets in [batch] if measure_batch is None else [batch, measure_batch]:
        j = jacobian(model, inputs, method).double()
        with torch.no_grad():
            outputs = model(inputs)
        sides.append((j, output_gradient(loss_fn, outputs, targets).double(), outputs.shape[0]))
    if measure_batch is None:
        sides.append(sides[0])
    (j_b, g_b, n_b), (j_m, g_m, _) = sides
    delta = float(g_m @ entk(j_m, j_b) @ g_b)
    chi_loss_raw = float(g_b.norm() * g_m.norm())
    chi_net_raw = float(j_b.norm() * j_m.norm())
    return Reference(
        delta=delta,
        chi_loss_raw=chi_loss_raw,
        chi_net_raw=chi_net_raw,
        chi_pos=delta / (chi_loss_raw * chi_net_raw),
        j_sq_per_sample=j_b.reshape(n_b, -1, j_b.shape[1]).pow(2).sum((1, 2)),
        g_sq=float(g_b.pow(2).sum()),
        j_sq=float(j_b.pow(2).sum()),
    )
