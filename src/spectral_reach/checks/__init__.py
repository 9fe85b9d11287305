"""Verification experiments on trained models: Hutchinson convergence (Fig. 6), explicit
eNTK spectra of a reduced output space (Fig. 12)."""
