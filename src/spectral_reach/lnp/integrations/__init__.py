"""LNP in the training loops researchers already run: the Hugging Face ``Trainer``
(:mod:`.hf`, ``pip install spectral-reach[hf]``) and PyTorch Lightning (:mod:`.lightning`,
``pip install spectral-reach[lightning]``). Each integration imports its framework;
``spectral_reach.lnp`` imports none of them."""
