"""A ``torch.rand`` whose values depend only on the requested shape: reproducible training steps.

Mask2Former draws random points twice per loss layer: the matcher's uniform points and the
criterion's oversampled points (detectron2's ``get_uncertain_point_coords_with_randomness``). Both
call ``torch.rand`` with a shape only. With :func:`shape_seeded_rand` patched in, any two faithful
implementations draw the same points whatever the order of their calls, so their losses and
gradients can be compared exactly. Used by ``make_mask2former.py`` (on the published code) and by
the training-step parity test (on this project), so both runs see the same patch.
"""

import contextlib
import zlib
from typing import Any, Iterator, Optional, Sequence, Union
from unittest import mock

import torch

_TORCH_RAND = torch.rand


def _shape(size: Sequence[Union[int, Sequence[int]]]) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
        return tuple(int(s) for s in size[0])
    return tuple(int(s) for s in size)


def shape_seeded_rand(
    *size: Union[int, Sequence[int]],
    dtype: Optional[torch.dtype] = None,
    device: Optional[Union[str, torch.device]] = None,
    **kwargs: Any,
) -> torch.Tensor:
    """U[0, 1) values of ``size`` from a CPU generator seeded with the CRC-32 of the shape."""
    if kwargs.pop("generator", None) is not None or kwargs.pop("out", None) is not None:
        raise ValueError("shape_seeded_rand: 'generator' and 'out' are not supported")
    shape = _shape(size)
    generator = torch.Generator().manual_seed(zlib.crc32(repr(shape).encode()))
    values = _TORCH_RAND(shape, generator=generator, dtype=dtype or torch.float32)
    return values.to(device or "cpu").requires_grad_(kwargs.get("requires_grad", False))


@contextlib.contextmanager
def patch_torch_rand() -> Iterator[None]:
    """Within the block, ``torch.rand`` is :func:`shape_seeded_rand`."""
    with mock.patch.object(torch, "rand", shape_seeded_rand):
        yield
