"""BatchNorm folded into the convolution before it, for inference copies of the network only.

In eval mode a BatchNorm is a per-channel affine map, y = (x - mean) * g / sqrt(var + eps) + b, so after a
convolution it can live in that convolution's weights and bias: one kernel instead of two, and no pass of
the feature map through memory for the BatchNorm (98 of them in FW-RD's network; on a GPU that traffic,
not the convolutions, was half the batch time). The per-channel scale and bias are computed in float64,
so the folded fp32 network equals the unfolded one to rounding (tests hold 1e-6 relative on scores).

Training never folds: its BatchNorm statistics are re-estimated every epoch. `FusedScorer` folds its own
deep copy, which every inference path uses (ONNX export, hence TensorRT and int8; the torch backend).
Parameter names are kept (`student.layer3.0.conv1.weight` stays that), so rules that pick convolutions
by weight name, like int8's KEEP_FP32, still find them; the BatchNorms become `nn.Identity`.

    folded = fold_batchnorm(copy.deepcopy(model).eval())   # in place; returns its argument
"""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

Conv = (nn.Conv2d, nn.ConvTranspose2d)


def conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(convolution, BatchNorm) qualified names where the BatchNorm reads that convolution's output and
    nothing else does: read off the traced data flow, not guessed from names. Submodules that cannot be
    traced as a whole are traced child by child."""
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception:  # data-dependent Python in forward: look one level down
        return [(f"{name}.{conv}", f"{name}.{bn}") for name, child in module.named_children()
                for conv, bn in conv_bn_pairs(child)]
    modules = dict(module.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0] if node.args else None
        if (isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1
                and isinstance(modules.get(source.target), Conv)):
            pairs.append((str(source.target), str(node.target)))
    return pairs


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every foldable BatchNorm of `module` (eval mode) into its convolution, in place; returns `module`.

    Foldable: eval mode with running statistics, after a Conv2d, or a ConvTranspose2d with one group (its
    weight is [in, out, kH, kW], so the scale goes on dim 1). Others are left as they are.
    """
    if module.training:
        raise ValueError("fold_batchnorm needs a module in eval mode (training re-estimates BatchNorm statistics)")
    modules = dict(module.named_modules())
    for conv_name, bn_name in conv_bn_pairs(module):
        conv, bn = modules[conv_name], modules[bn_name]
        if bn.running_mean is None or bn.running_var is None or bn.training:
            continue
        transpose = isinstance(conv, nn.ConvTranspose2d)
        if transpose and conv.groups != 1:
            continue
        _fold(conv, bn, transpose)
        parent, _, leaf = bn_name.rpartition(".")
        setattr(modules[parent] if parent else module, leaf, nn.Identity())
    return module


def _fold(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d, transpose: bool) -> None:
    """Scale the convolution's weight and set its bias to the folded ones: the per-channel scale and the bias
    in float64 (rounded once), the weight times the rounded scale in place, in its own type (float64 copies
    of the weights would cost ~1 GB of memory traffic for nothing measurable)."""
    weight = conv.weight.detach()
    channels = bn.num_features

    def f64(t: torch.Tensor | None, fill: float) -> torch.Tensor:
        if t is None:
            return torch.full((channels,), fill, dtype=torch.float64, device=weight.device)
        return t.detach().double()

    scale = f64(bn.weight, 1.0) * torch.rsqrt(f64(bn.running_var, 1.0) + bn.eps)
    bias = (f64(conv.bias, 0.0) - f64(bn.running_mean, 0.0)) * scale + f64(bn.bias, 0.0)
    shape = (1, -1, 1, 1) if transpose else (-1, 1, 1, 1)  # ConvTranspose2d weights are [in, out, kH, kW]
    weight.mul_(scale.to(weight.dtype).view(shape))  # in place: the module is the caller's copy
    conv.weight.requires_grad_(False)
    conv.bias = nn.Parameter(bias.to(weight.dtype), requires_grad=False)
