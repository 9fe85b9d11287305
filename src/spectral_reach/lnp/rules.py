"""Per-sample squared gradient norms, one rule per layer type.

A rule turns what a layer saw in the forward pass (its inputs) and what flowed back into its
output (``G = ds/dy`` for a scalar ``s = sum_i v_i . f_i``) into the per-sample squared norm of
the gradient of ``s`` with respect to the layer's trainable parameters:

    n_i = sum_{p in layer} || d s_i / d p ||^2          (s_i = v_i . f_i, one sample)

Every rule has two steps: ``prepare`` runs once per forward pass and caches what does not depend
on ``G`` (activation Gram matrices, normalised inputs, embedding row indices), and ``sq_norms``
runs once per backward pass. The Hutchinson estimator backpropagates K vectors through one
forward pass, so the cache is reused K times.

Our rules cover ``nn.Linear``, ``nn.Embedding``, ``nn.LayerNorm``, ``nn.RMSNorm``,
transformers' ``LlamaRMSNorm`` and ``nn.BatchNorm*d`` in eval mode. Other layers fall back to Opacus: its norm samplers, then its
grad samplers, then its functorch per-sample gradients. Opacus's own ``nn.Linear`` norm sampler
always forms both ``T x T`` Gram matrices for sequences, which dominates at ``T = 1024`` and
recomputes the activation Gram for every backward pass; ours chooses the cheaper of the two
exact forms per layer and caches the activation side.

Norms accumulate in float32 (float64 stays float64), also when the model runs under bf16
autocast. There the Linear rule forms its per-sample gradient blocks (or Gram matrices) on bf16
tensor cores, as the model's own matmuls are: the products accumulate in fp32 inside the matmul,
each entry is rounded once to bf16, and the squares are summed in fp32. Casting every backward
pass's ``(b, T, d_out)`` gradient to fp32 first took a third of the GPU time of a measurement
(``benchmarks/train_throughput.py --profile``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Largest per-sample gradient block (elements) materialised at once by the Linear rule.
MATERIALISE_CHUNK_ELEMENTS = 1 << 25


def accumulation_dtype(t: Tensor) -> torch.dtype:
    """float64 stays float64; every other floating type accumulates in float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _sq_sum_per_sample(t: Tensor) -> Tensor:
    """``||t_i||^2`` for each sample ``i`` of a ``(b, ...)`` tensor, summed in the accumulation dtype."""
    return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1, dtype=accumulation_dtype(t)).pow(2)


def _sum_to_param_shape(t: Tensor, param_ndim: int) -> Tensor:
    """Sum ``(b, ..., *param_shape)`` over every dimension but the batch and the parameter's."""
    dims = tuple(range(1, t.dim() - param_ndim))
    return t.sum(dims) if dims else t


class NormRule(Protocol):
    """What a per-sample norm rule provides."""

    def prepare(self, module: nn.Module, inputs: tuple[Tensor, ...], passes: int) -> Any:
        """Cache what does not depend on the backward pass; ``passes`` backward passes follow."""

    def sq_norms(self, module: nn.Module, ctx: Any, backprops: Tensor) -> Tensor:
        """Per-sample squared gradient norms ``(b,)`` over the module's trainable parameters."""


def linear_strategy(tokens: int, d_in: int, d_out: int, passes: int) -> str:
    """Pick the cheaper exact per-sample norm of ``W`` for a Linear layer on sequences.

    With ``A_i`` (T x d_in) the inputs and ``G_i`` (T x d_out) the output gradients of sample i,
    ``||G_i^T A_i||_F^2`` equals the Gram form ``sum_{t,s} (A_i A_i^T)_{ts} (G_i G_i^T)_{ts}``.
    Multiply-adds per sample, for ``passes`` backward passes through one forward pass:

        gram        = T^2 d_in (once, cached)  +  passes * T^2 d_out
        materialise = passes * T d_in d_out    (form G_i^T A_i, square, sum)
    """
    gram = tokens * tokens * (d_in + passes * d_out)
    materialise = passes * tokens * d_in * d_out
    return "gram" if gram <= materialise else "materialise"


@dataclass
class _LinearCtx:
    strategy: str
    acts: Tensor  # (b, T, d_in), in the dtype the layer computed in
    gram: Tensor | None = None  # (b, T, T), made by the first backward pass that needs it


class LinearRule:
    """``nn.Linear``: weight by the Gram or the materialised form, bias as ``||sum_t G_t||^2``."""

    def __init__(self, strategy: str | None = None) -> None:
        if strategy not in (None, "gram", "materialise"):
            raise ValueError(f"strategy must be None, 'gram' or 'materialise', not {strategy!r}")
        self.strategy = strategy

    def prepare(self, module: nn.Linear, inputs: tuple[Tensor, ...], passes: int) -> _LinearCtx:
        a = inputs[0]
        acts = a.reshape(a.shape[0], -1, a.shape[-1])
        if torch.is_autocast_enabled(a.device.type):
            acts = acts.to(torch.get_autocast_dtype(a.device.type))
        strategy = self.strategy or linear_strategy(acts.shape[1], module.in_features, module.out_features, passes)
        return _LinearCtx(strategy, acts)

    def sq_norms(self, module: nn.Linear, ctx: _LinearCtx, backprops: Tensor) -> Tensor:
        g = backprops.reshape(backprops.shape[0], -1, backprops.shape[-1]).to(ctx.acts.dtype)
        acc = accumulation_dtype(g)
        out = torch.zeros(g.shape[0], dtype=acc, device=g.device)
        if module.weight.requires_grad:
            if ctx.strategy == "gram":
                if ctx.gram is None:  # shared by every probe; never built for an exact output layer
                    ctx.gram = ctx.acts @ ctx.acts.transpose(1, 2)
                out += (ctx.gram * (g @ g.transpose(1, 2))).sum((1, 2), dtype=acc)
            else:
                step = max(1, MATERIALISE_CHUNK_ELEMENTS // (module.in_features * module.out_features))
                for lo in range(0, g.shape[0], step):
                    per_sample = g[lo : lo + step].transpose(1, 2) @ ctx.acts[lo : lo + step]
                    out[lo : lo + step] += _sq_sum_per_sample(per_sample)
        if module.bias is not None and module.bias.requires_grad:
            out += g.sum(1, dtype=acc).pow(2).sum(1)
        return out

    def output_sq_norms(self, module: nn.Linear, ctx: _LinearCtx) -> Tensor:
        """``||J_i||_F^2`` of this layer's parameters when its output is the model output.

        ``df_(t,o) / dW_(o',k) = [o = o'] a_(t,k)`` and ``df_(t,o) / dc_o' = [o = o']``, so

            ||J_i||_F^2 = d_out sum_t ||a_t||^2  +  T d_out      (weight, bias)

        exactly: the expectation over probe vectors, without them.
        """
        out = torch.zeros(ctx.acts.shape[0], dtype=accumulation_dtype(ctx.acts), device=ctx.acts.device)
        if module.weight.requires_grad:
            out += module.out_features * _sq_sum_per_sample(ctx.acts)
        if module.bias is not None and module.bias.requires_grad:
            out += ctx.acts.shape[1] * module.out_features
        return out


@dataclass
class _EmbeddingCtx:
    inverse: Tensor  # (b*T,) index of each position's (sample, row) pair
    pair_sample: Tensor  # (n_pairs,) sample of each distinct (sample, row) pair
    n_pairs: int
    keep: Tensor | None  # (b*T,) False where the id is the padding index (zero gradient)


class EmbeddingRule:
    """``nn.Embedding``: the gradient of sample i has row r equal to ``sum_{t: id_t = r} G_t``.

    ``||.||^2 = sum_r ||sum_{t: id_t=r} G_t||^2``: positions are grouped by (sample, row) once per
    forward pass, then each backward pass is one ``index_add`` of ``b*T*d`` numbers.
    """

    def prepare(self, module: nn.Embedding, inputs: tuple[Tensor, ...], passes: int) -> _EmbeddingCtx:
        if module.scale_grad_by_freq:
            raise NotImplementedError(
                "nn.Embedding(scale_grad_by_freq=True) scales gradients by batch-wide counts, so "
                "per-sample gradients are not separable; construct the embedding without it"
            )
        ids = inputs[0].reshape(inputs[0].shape[0], -1).long()
        b = ids.shape[0]
        sample = torch.arange(b, device=ids.device).unsqueeze(1).expand_as(ids)
        key = (sample * module.num_embeddings + ids).reshape(-1)
        pairs, inverse = torch.unique(key, return_inverse=True)
        keep = None
        if module.padding_idx is not None:
            keep = ids.reshape(-1) != module.padding_idx
        return _EmbeddingCtx(inverse, pairs // module.num_embeddings, pairs.numel(), keep)

    def sq_norms(self, module: nn.Embedding, ctx: _EmbeddingCtx, backprops: Tensor) -> Tensor:
        b = backprops.shape[0]
        g = backprops.reshape(-1, backprops.shape[-1]).to(accumulation_dtype(backprops))
        if ctx.keep is not None:
            g = g * ctx.keep.unsqueeze(1).to(g.dtype)
        rows = torch.zeros(ctx.n_pairs, g.shape[1], dtype=g.dtype, device=g.device)
        rows.index_add_(0, ctx.inverse, g)
        out = torch.zeros(b, dtype=g.dtype, device=g.device)
        return out.scatter_add_(0, ctx.pair_sample, rows.pow(2).sum(1))


class _ElementwiseAffineRule:
    """Norm layers ``y = w * xhat(x) (+ c)``: per-sample grads ``sum_t G_t * xhat_t`` and ``sum_t G_t``.

    Subclasses give ``xhat`` and, where the parameters do not sit on the trailing axes, the
    axes that the per-sample gradient sums over.
    """

    def normalise(self, module: nn.Module, x: Tensor) -> Tensor:
        raise NotImplementedError

    def per_sample(self, t: Tensor, param: Tensor) -> Tensor:
        """Sum ``(b, ...)`` down to the per-sample gradient ``(b, *param.shape)``."""
        return _sum_to_param_shape(t, param.dim())

    def prepare(self, module: nn.Module, inputs: tuple[Tensor, ...], passes: int) -> Tensor:
        x = inputs[0]
        with torch.no_grad():
            return self.normalise(module, x).to(accumulation_dtype(x))

    def sq_norms(self, module: nn.Module, ctx: Tensor, backprops: Tensor) -> Tensor:
        g = backprops.to(ctx.dtype)
        out = torch.zeros(g.shape[0], dtype=g.dtype, device=g.device)
        weight = getattr(module, "weight", None)
        bias = getattr(module, "bias", None)
        if weight is not None and weight.requires_grad:
            out += _sq_sum_per_sample(self.per_sample(g * ctx, weight))
        if bias is not None and bias.requires_grad:
            out += _sq_sum_per_sample(self.per_sample(g, bias))
        return out


class LayerNormRule(_ElementwiseAffineRule):
    """``nn.LayerNorm``: ``xhat = (x - mean) / sqrt(var + eps)`` over the normalised shape."""

    def normalise(self, module: nn.LayerNorm, x: Tensor) -> Tensor:
        return F.layer_norm(x, module.normalized_shape, eps=module.eps)


class RMSNormRule(_ElementwiseAffineRule):
    """``nn.RMSNorm``: ``xhat = x / sqrt(mean(x^2) + eps)`` over the normalised shape."""

    def normalise(self, module: nn.RMSNorm, x: Tensor) -> Tensor:
        return F.rms_norm(x, module.normalized_shape, eps=module.eps)


class LlamaRMSNormRule(_ElementwiseAffineRule):
    """transformers' ``LlamaRMSNorm``: as its forward, in float32, cast back to the input dtype."""

    def normalise(self, module: nn.Module, x: Tensor) -> Tensor:
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + module.variance_epsilon)
        return h.to(x.dtype)


class BatchNormEvalRule(_ElementwiseAffineRule):
    """``nn.BatchNorm{1,2,3}d`` in eval mode: ``xhat = (x - running_mean) / sqrt(running_var + eps)``
    per channel (dim 1), summed over every axis but batch and channel. Train mode mixes samples
    and is refused before any rule runs.
    """

    def normalise(self, module: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
        return F.batch_norm(x, module.running_mean, module.running_var, training=False, eps=module.eps)

    def per_sample(self, t: Tensor, param: Tensor) -> Tensor:
        dims = tuple(range(2, t.dim()))
        return t.sum(dims) if dims else t


class OpacusSamplerRule:
    """Adapter for an Opacus sampler ``fn(module, activations, backprops) -> {param: tensor}``.

    ``kind="norm"``: Opacus norm samplers return per-sample norms; ``kind="grad"``: grad samplers
    and the functorch fallback return per-sample gradients.
    """

    def __init__(self, fn: Callable[..., dict], kind: str, name: str) -> None:
        self.fn, self.kind, self.name = fn, kind, name

    def prepare(self, module: nn.Module, inputs: tuple[Tensor, ...], passes: int) -> list[Tensor]:
        return [t.contiguous() for t in inputs]

    def sq_norms(self, module: nn.Module, ctx: list[Tensor], backprops: Tensor) -> Tensor:
        acc = accumulation_dtype(backprops)
        per_param = self.fn(module, ctx, backprops)
        out = torch.zeros(backprops.shape[0], dtype=acc, device=backprops.device)
        for param, value in per_param.items():
            if not param.requires_grad:
                continue
            value = value.to(acc)
            out += value.pow(2) if self.kind == "norm" else _sq_sum_per_sample(value)
        return out


RULES: dict[type, NormRule] = {
    nn.Linear: LinearRule(),
    nn.Embedding: EmbeddingRule(),
    nn.LayerNorm: LayerNormRule(),
    nn.RMSNorm: RMSNormRule(),
    nn.BatchNorm1d: BatchNormEvalRule(),
    nn.BatchNorm2d: BatchNormEvalRule(),
    nn.BatchNorm3d: BatchNormEvalRule(),
}

#: Rules for types of other libraries, by ``module.qualname``: found without importing the library
#: (importing transformers' Llama module takes seconds; a model holding one has imported it).
RULES_BY_NAME: dict[str, NormRule] = {
    "transformers.models.llama.modeling_llama.LlamaRMSNorm": LlamaRMSNormRule(),
}


def own_type(module: nn.Module) -> type:
    """The type whose rule a module takes: its own, except that FSDP2's ``fully_shard`` swaps a
    module's class for ``FSDP<Class>``, a subclass of ``(FSDPModule, Class)`` that adds no forward
    of its own: that module takes ``Class``'s rule."""
    kind = type(module)
    bases = kind.__bases__
    if len(bases) == 2 and bases[0].__name__ == "FSDPModule" and kind.__name__ == f"FSDP{bases[1].__name__}":
        return bases[1]
    return kind


def rule_for(module_type: type) -> NormRule | None:
    """The rule registered for ``module_type`` (exactly that type), by type or by qualified name."""
    return RULES.get(module_type) or RULES_BY_NAME.get(f"{module_type.__module__}.{module_type.__qualname__}")


def register_norm_rule(module_type: type, rule: NormRule) -> None:
    """Use ``rule`` for every module whose type is exactly ``module_type``."""
    RULES[module_type] = rule
