"""Data-parallel exactness: under torchrun with 2 ranks (gloo, CPU), measure gives every rank the
components of the global batch, equal to one process measuring the concatenated batch to 1e-10
(float64), exact and with Hutchinson vectors, with the DDP-averaged step gradient and without; and
the same under FSDP2 (``fully_shard`` on the root, or on each layer and the root) with the step's
sharded gradients."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ddp_measure import batches, model, records
from workflow_run import ROOT

from spectral_reach.lnp import UnsupportedModelError, measure

KEYS = ("delta", "chi_loss", "chi_net", "chi_pos", "loss", "loss_measure", "g_sq", "j_sq", "j_sq_measure")
#: the cross records also split over groups and take an update (issue 39)
SPLIT_KEYS = ("delta_update", "hidden.delta", "hidden.j_sq", "hidden.chi_pos", "other.j_sq_measure", "other.chi_net")


def torchrun(out, script: str, *args: str) -> list[dict]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.run(
        [*cmd, str(ROOT / "tests" / script), str(out), *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return torchrun(tmp_path_factory.mktemp("ddp"), "ddp_measure.py")


@pytest.fixture(scope="module", params=["nested", "root"])
def fsdp_ranks(request, tmp_path_factory):
    return torchrun(tmp_path_factory.mktemp(f"fsdp_{request.param}"), "fsdp_measure.py", request.param)


@pytest.mark.parametrize("k", ["None", "3"])
@pytest.mark.parametrize("variant", ["cross", "self"])
def test_two_ranks_equal_one_process_on_the_whole_batch(ranks, k, variant):
    assert_equal_to_one_process(ranks, k, variant)


@pytest.mark.parametrize("k", ["None", "3"])
@pytest.mark.parametrize("variant", ["cross", "self"])
def test_fsdp2_ranks_equal_one_process_on_the_whole_batch(fsdp_ranks, k, variant):
    """Issue 36: FSDP2 was refused. Its parameters are unsharded for the measurement (as for a forward
    pass) and the step's sharded gradients gathered; FSDP is left as it was, and training goes on."""
    assert_equal_to_one_process(fsdp_ranks, k, variant)
    assert all(r["left_sharded"] and r["trains_after"] for r in fsdp_ranks)


def assert_equal_to_one_process(ranks: list[dict], k: str, variant: str) -> None:
    batch, other = batches()
    single = records(model(), batch, other)[k][variant]
    for rank in ranks:
        got = rank[k][variant]
        assert (got["n_units"], got["batch_size"]) == (single["n_units"], single["batch_size"])
        if variant == "cross":
            assert got["delta_update"] == pytest.approx(got["delta"], rel=1e-12)  # update = the step's gradient
        for key in KEYS + (SPLIT_KEYS if variant == "cross" else ()):
            assert got[key] == pytest.approx(single[key], rel=1e-10, abs=1e-14), key
    assert ranks[0][k][variant] == ranks[1][k][variant]  # every rank gets the same record


def test_fsdp1_is_refused():
    class FullyShardedDataParallel(type(model())):
        pass

    net = FullyShardedDataParallel(*model())
    batch, _ = batches()
    with pytest.raises(UnsupportedModelError, match="sharded by FSDP"):
        measure(net, lambda o, y: o.sum() * 0, batch)


def test_a_logits_only_wrapping_ddp_keeps_wrapping_it(tmp_path):
    """measure() unwraps DDP inside a LogitsOnly into a wrapper of its own: the caller's still wraps DDP."""
    from types import SimpleNamespace

    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from spectral_reach.lnp import LogitsOnly

    class HFStyle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model()

        def forward(self, ids):
            return SimpleNamespace(logits=self.net(ids))

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(HFStyle())
        wrapper = LogitsOnly(ddp)
        batch, _ = batches()
        loss_fn = lambda o, y: F.cross_entropy(o.flatten(0, 1), y.flatten())  # noqa: E731
        assert measure(wrapper, loss_fn, batch).n_units == batch[1].numel()
        assert wrapper.model is ddp
    finally:
        dist.destroy_process_group()
