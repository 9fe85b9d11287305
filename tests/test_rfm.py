"""Random-feature models: measured LNP components against closed-form theory."""

import numpy as np
import pandas as pd
import pytest
import torch

from spectral_reach import rfm


def test_components_match_theory_at_large_width():
    measured = rfm.run([1.5], n=256, dim=64, width=4096, seeds=12, first_seed=0)
    curves = rfm.theory([1.5], dim=64, kernel_samples=1024, teacher_draws=2000, seed=1)
    table = rfm.deviations(measured, curves).iloc[0]
    assert table["chi_loss_mean"] == pytest.approx(1.0, abs=1e-12)  # labels have unit mean square
    assert abs(table["dev_chi_net"]) < 0.03
    assert abs(table["chi_pos_mean"] - table["chi_pos_kernel"]) <= table["chi_pos_std"]
    assert abs(table["chi_pos_mean"] - table["chi_pos_teacher"]) <= table["chi_pos_std"] / np.sqrt(12) * 3
    assert measured["kta_identity_abs_err"].max() < 1e-12
    assert table["kta_identity_max_abs_err"] == measured["kta_identity_abs_err"].max()


def test_linear_dominance_tends_to_zeta_ratio():
    from scipy.special import zeta

    assert rfm.theory_linear_dominance(200_000, 3.0) == pytest.approx(zeta(6) / zeta(3) ** 2, rel=1e-6)


def test_arccos_kernel_is_the_infinite_width_limit():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    w = torch.randn(400_000, 5, generator=g, dtype=torch.float64)
    phi = np.sqrt(2.0) * torch.relu(x @ w.T)
    torch.testing.assert_close(phi @ phi.T / w.shape[0], rfm.arccos_kernel(x, x), rtol=0.02, atol=0.02)


def test_teacher_curve_on_a_hand_spectrum():
    # two equal modes: y^T Theta y / (y^T y tr Theta) = mu / (2 mu) = 1/2 for every teacher
    assert rfm.theory_kernel_teacher(
        torch.tensor([1.0, 1.0], dtype=torch.float64), 50, torch.Generator()
    ) == pytest.approx(0.5)
    assert rfm.theory_kernel_spectrum(torch.tensor([3.0, 1.0])) == pytest.approx(10 / 16)


def test_deviation_table_on_hand_numbers():
    measured = pd.DataFrame(
        dict(alpha=[1.0, 1.0], seed=[0, 1], chi_loss=[1.0, 1.0], chi_net=[1.1, 0.9], chi_pos=[0.2, 0.4])
    )
    curves = pd.DataFrame(
        dict(
            alpha=[1.0],
            chi_loss=[1.0],
            chi_net=[1.0],
            chi_pos_linear=[0.6],
            chi_pos_kernel=[0.25],
            chi_pos_teacher=[0.3],
        )
    )
    row = rfm.deviations(measured, curves).iloc[0]
    assert row["dev_chi_net"] == pytest.approx(0.0)
    assert row["dev_chi_pos_kernel"] == pytest.approx(0.2)
    assert row["dev_chi_pos_linear"] == pytest.approx(-0.5)
    assert bool(row["chi_pos_kernel_within_spread"])  # |0.3 - 0.25| <= sd 0.1414
