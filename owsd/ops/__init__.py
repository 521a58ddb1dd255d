"""Fast kernels for the scrambler: transposed convolution and the fused scrambler stack.

The operators live in one ``torch.library`` namespace, ``owsd``
(``torch.ops.owsd.conv_transpose2d``, ``torch.ops.owsd.fused_scramble``,
``torch.ops.owsd.affine_scramble`` for stacks without activations collapsed into one
matrix, :mod:`owsd.ops.affine`), compiled
on first use (never at import) and cached; without a working compiler the pure
PyTorch reference in :mod:`owsd.ops.reference` is used (one warning).
See ``docs/kernel.md``.

Example:
    >>> import torch, owsd.ops as ops
    >>> x, w = torch.randn(1, 2, 3, 3), torch.randn(2, 2, 3, 3)
    >>> ops.conv_transpose2d(x, w, impl="ref").shape
    torch.Size([1, 2, 5, 5])
"""

from owsd.ops._api import (
    IMPLS,
    conv_transpose2d,
    fused_scramble,
    get_default_impl,
    set_default_impl,
    status,
)
from owsd.ops.affine import (
    CollapsedStack,
    affine_scramble,
    affine_scramble_ref,
    collapse_stack,
    collapse_worthwhile,
    collapsed_scramble,
)
from owsd.ops.reference import ACTIVATIONS, NORMALIZATIONS, fused_scramble_ref

__all__ = [
    "ACTIVATIONS",
    "CollapsedStack",
    "affine_scramble",
    "affine_scramble_ref",
    "collapse_stack",
    "collapse_worthwhile",
    "collapsed_scramble",
    "IMPLS",
    "NORMALIZATIONS",
    "conv_transpose2d",
    "fused_scramble",
    "fused_scramble_ref",
    "get_default_impl",
    "set_default_impl",
    "status",
]
