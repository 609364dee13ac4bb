"""Batched prediction: SeMaskPredictor.predict_batch and the demo's --batch-size give what one
image at a time gives."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_demo import colour_image, demo
from test_predictor import QUICKSTART_CONFIG, contract_cfg, tiny_semask_weights

from semask.engine import build_cfg
from semask.predictor import SeMaskPredictor

# (height, width) -> test size at MIN_SIZE_TEST 96: 96x128, 96x128, 144x96, 96x96, 96x128
SIZES = [(120, 160), (150, 200), (300, 200), (97, 97), (60, 80)]


def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]


def test_a_real_model_predicts_mixed_sizes_in_batches_as_one_by_one(tmp_path):
    predictor = SeMaskPredictor(
        build_cfg(str(QUICKSTART_CONFIG), tiny_semask_weights(tmp_path / "w.pth"))
    )
    singles = [predictor.predict(image) for image in images()]
    batch_sizes = []
    model = predictor.model
    predictor.model = lambda inputs: batch_sizes.append(len(inputs)) or model(inputs)
    batched = predictor.predict_batch(images(), batch_size=2)
    assert batch_sizes == [2, 1, 1, 1]  # the three 96x128 images in 2 + 1, then one per size
    for single, together, (h, w) in zip(singles, batched, SIZES):
        assert together.labels.shape == (h, w)
        np.testing.assert_allclose(together.scores, single.scores, rtol=1e-5, atol=1e-5)
        assert (together.labels == single.labels).float().mean() > 0.999


def test_batch_size_is_checked_and_an_empty_list_is_fine():
    predictor = SeMaskPredictor(contract_cfg())
    assert predictor.predict_batch([]) == []
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        predictor.predict_batch(images(), batch_size=0)


def test_demo_batch_size_writes_the_same_files(tmp_path):
    overrides = tiny_semask_weights(tmp_path / "tiny.pth")
    folder = tmp_path / "images"
    folder.mkdir()
    for i, (h, w) in enumerate(SIZES):
        cv2.imwrite(str(folder / f"{i}.png"), colour_image(h, w, i))
    (folder / "broken.png").write_bytes(b"not an image")
    outputs = {}
    for batch_size in (1, 3):
        out = tmp_path / f"out{batch_size}"
        argv = ["--config-file", str(QUICKSTART_CONFIG), "--input", str(folder), "--output"]
        argv += [str(out), "--save-labels", "--batch-size", str(batch_size)]
        assert demo.main(argv + overrides) == 1  # broken.png skipped
        outputs[batch_size] = {p.name: cv2.imread(str(p)) for p in sorted(out.iterdir())}
    assert sorted(outputs[1]) == sorted(
        f"{i}{s}" for i in range(5) for s in (".png", "_labels.png")
    )
    assert sorted(outputs[3]) == sorted(outputs[1])
    for name, picture in outputs[1].items():
        assert np.array_equal(outputs[3][name], picture), name


def test_demo_refuses_a_batch_size_below_one(tmp_path: Path):
    with pytest.raises(SystemExit, match="--batch-size must be >= 1, got 0"):
        demo.main(["--config-file", "x.yaml", "--input", "a.png", "--batch-size", "0"])
