"""The one accommodation SeMask keeps at run time, whichever detectron2 is installed.

detectron2 0.6 from PyPI is made to work on current numpy, Pillow, torch and Python when it is
installed: ``tools/install_detectron2.py`` patches its sdist (its docstring lists how), so
nothing is patched at ``import semask`` and detectron2 and SeMask import in any order. An upstream
detectron2 built from its git repository is kept as it is; its builds from before April 2025
still draw the replacement for a skipped sample (a mapper that returned None) with
``random.sample`` of a set, which Python 3.11 refuses. SeMask's training loader therefore maps its
data set with :class:`FallbackMapDataset` (:func:`build_fallback_train_loader`).
"""

import random
from typing import Any, Callable, List

from detectron2.config import CfgNode
from detectron2.data import DatasetFromList, build_detection_train_loader
from detectron2.data.build import _train_loader_from_config
from detectron2.data.common import MapDataset
from torch.utils.data import DataLoader


class SortedSetSampling(random.Random):
    """``random.Random`` whose ``sample`` also accepts a set, sampled in sorted order."""

    def sample(self, population: Any, k: int, **kwargs: Any) -> List[Any]:
        if isinstance(population, (set, frozenset)):
            population = sorted(population)
        return super().sample(population, k, **kwargs)


class FallbackMapDataset(MapDataset):
    """detectron2's ``MapDataset`` of a map-style data set whose fallback draw for a skipped
    sample works on Python >= 3.11 with any detectron2 (the same draws as the patched 0.6)."""

    def __init__(self, dataset: Any, map_func: Callable[[Any], Any]) -> None:
        super().__init__(dataset, map_func)
        self._rng = SortedSetSampling(42)


def build_fallback_train_loader(cfg: CfgNode, mapper: Callable[[Any], Any]) -> DataLoader:
    """``build_detection_train_loader(cfg, mapper=mapper)`` with the data set mapped by
    :class:`FallbackMapDataset` instead of ``MapDataset``; batches as detectron2's loader gives."""
    # detectron2's own config reading (private, the same in 0.6 and upstream), not a copy of it
    kwargs = _train_loader_from_config(cfg, mapper=mapper)
    dataset = kwargs.pop("dataset")
    if isinstance(dataset, list):
        dataset = DatasetFromList(dataset, copy=False)
    mapped = FallbackMapDataset(dataset, kwargs.pop("mapper"))
    return build_detection_train_loader(mapped, mapper=None, **kwargs)
