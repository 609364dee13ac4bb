"""tools/visualize_data.py: pictures of the training set as stored and as the training loader feeds
it, on a tiny generated set."""

import sys

import numpy as np
import pytest
from conftest import REPO_ROOT
from PIL import Image
from test_train_e2e import CONFIG, tiny_opts

from semask.data.quickstart import generate

sys.path.insert(0, str(REPO_ROOT / "tools"))
import visualize_data  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser_data")
    generate(root, num_train=4, num_val=1, size=SIZE, seed=2)
    return root


def _run(data_root, out, source, num):
    opts = tiny_opts(data_root, out / "train_output", max_iter=1)
    argv = ["--config-file", str(CONFIG), "--source", source, "--output", str(out / source)]
    return visualize_data.main(argv + ["--num", str(num), *opts])


def test_annotations_are_drawn_as_stored(data_root, tmp_path):
    written = _run(data_root, tmp_path, "annotation", 3)
    stems = sorted(p.stem for p in (data_root / "images" / "training").iterdir())[:3]
    assert [p.name for p in written] == [f"{i:04d}_{s}.png" for i, s in enumerate(stems)]
    assert sorted((tmp_path / "annotation").iterdir()) == written
    picture = np.asarray(Image.open(written[0]))
    # image | labels, each enlarged 8x to a side of 256, over a legend
    assert picture.shape[1] == 2 * 256 and picture.shape[0] > 256
    stored = np.asarray(Image.open(data_root / "images" / "training" / f"{stems[0]}.jpg"))
    assert np.array_equal(picture[:256:8, :256:8], stored)


def test_dataloader_samples_are_drawn_after_the_mapper(data_root, tmp_path):
    written = _run(data_root, tmp_path, "dataloader", 5)  # batches of 2: three batches
    assert len(written) == 5 and sorted((tmp_path / "dataloader").iterdir()) == written
    picture = np.asarray(Image.open(written[0]))
    # resized to 64 (INPUT.MIN_SIZE_TRAIN), cropped to 64 x 64, then enlarged 4x
    assert picture.shape[1] == 2 * 256


def test_num_must_be_positive(data_root, tmp_path):
    with pytest.raises(SystemExit):
        _run(data_root, tmp_path, "annotation", 0)
