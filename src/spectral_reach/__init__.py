"""spectral-reach: the LNP decomposition of training steps and the workflow of the paper.

The measurement lives in :mod:`spectral_reach.lnp` and depends on nothing else of the
package; use it from any PyTorch training loop::

    from spectral_reach.lnp import measure
    record = measure(model, loss_fn, (x, y), (x_val, y_val), train_grad=grads)
"""

__version__ = "0.1.0"
