"""semask.compat: the training loader's MapDataset draws a fallback for a skipped sample on
Python >= 3.11 whatever detectron2 is installed, as the patched detectron2 0.6 draws it."""

import pickle
import random
import sys

import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data.common import MapDataset

from semask.compat import FallbackMapDataset, SortedSetSampling, build_fallback_train_loader


def skip_two(record):
    return None if record == 2 else record


@pytest.mark.skipif(sys.version_info < (3, 11), reason="random.sample of a set works before 3.11")
def test_plain_random_refuses_a_set_which_sorted_set_sampling_accepts():
    with pytest.raises(TypeError, match="must be a sequence"):
        random.Random(42).sample({5, 1, 3}, k=2)
    assert SortedSetSampling(42).sample({5, 1, 3}, k=2) == random.Random(42).sample([1, 3, 5], k=2)
    assert SortedSetSampling(42).sample([9, 8], k=2) == random.Random(42).sample([9, 8], k=2)


def test_fallback_map_dataset_replaces_a_skipped_sample_and_pickles():
    dataset = FallbackMapDataset(list(range(6)), skip_two)
    assert isinstance(dataset, MapDataset)
    values = [dataset[i] for i in range(6)]
    assert values[:2] == [0, 1] and values[3:] == [3, 4, 5]
    assert values[2] in {0, 1, 3, 4, 5}
    copy = pickle.loads(pickle.dumps(dataset))  # how it reaches the dataloader's workers
    assert isinstance(copy._rng, SortedSetSampling)
    assert copy[2] in {0, 1, 3, 4, 5}


def test_fallback_draws_are_those_of_detectron2s_map_dataset_where_it_works():
    def skip_thirds(x):
        return None if x % 3 == 0 else x

    ours, theirs = (kind(list(range(20)), skip_thirds) for kind in (FallbackMapDataset, MapDataset))
    try:
        expected = [theirs[i] for i in range(20)]
    except TypeError:
        pytest.skip("this detectron2's MapDataset cannot draw a fallback on this Python")
    assert [ours[i] for i in range(20)] == expected
    assert 0 not in expected and len(set(expected)) > 5


def test_fallback_train_loader_batches_without_the_skipped_sample():
    name = "semask_compat_test_set"
    DatasetCatalog.register(name, lambda: [{"file_name": str(i), "index": i} for i in range(6)])
    try:
        cfg = get_cfg()
        cfg.DATASETS.TRAIN = (name,)
        cfg.SOLVER.IMS_PER_BATCH = 2
        cfg.DATALOADER.NUM_WORKERS = 0
        cfg.DATALOADER.ASPECT_RATIO_GROUPING = False
        loader = build_fallback_train_loader(cfg, lambda record: skip_two(record["index"]))
        batches = [batch for _, batch in zip(range(6), loader)]
    finally:
        DatasetCatalog.remove(name)
    assert all(len(batch) == 2 for batch in batches)
    drawn = [index for batch in batches for index in batch]
    assert 2 not in drawn
    assert set(drawn) == {0, 1, 3, 4, 5}  # 12 draws of a shuffled epoch of 6: all the others
