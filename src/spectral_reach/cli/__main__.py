"""``python -m spectral_reach.cli``: the same as the ``spectral-reach`` command."""

from . import main

main()
