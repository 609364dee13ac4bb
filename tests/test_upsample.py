"""semask.upsample: bands of bilinear upsampling equal F.interpolate, and so does the argmax."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling.postprocessing import sem_seg_postprocess

from semask.upsample import bilinear_rows, postprocess_to_output, upsampled_argmax

SIZES = [(5, 24, 32, 300, 500), (3, 7, 9, 61, 67), (4, 50, 70, 37, 41), (2, 12, 16, 12, 16)]


@pytest.mark.parametrize("classes, h, w, height, width", SIZES)
def test_bands_of_rows_equal_the_whole_interpolation(classes, h, w, height, width):
    scores = torch.randn(classes, h, w, generator=torch.Generator().manual_seed(h))
    whole = F.interpolate(scores[None], (height, width), mode="bilinear", align_corners=False)[0]
    bands = [
        bilinear_rows(scores, height, width, a, min(a + 13, height)) for a in range(0, height, 13)
    ]
    assert torch.allclose(torch.cat(bands, dim=1), whole, rtol=0, atol=1e-5)


@pytest.mark.parametrize("classes, h, w, height, width", SIZES)
def test_upsampled_argmax_equals_the_argmax_of_the_whole_interpolation(
    classes, h, w, height, width
):
    scores = torch.randn(classes, h, w, generator=torch.Generator().manual_seed(w))
    whole = F.interpolate(scores[None], (height, width), mode="bilinear", align_corners=False)[0]
    for chunk in (1, 1000, 1 << 22):  # one row a band, a few rows, everything at once
        labels = upsampled_argmax(scores, height, width, chunk_elements=chunk)
        assert labels.shape == (height, width) and labels.dtype == torch.int64
        assert torch.equal(labels, whole.argmax(dim=0))


@pytest.mark.parametrize(
    "image_size, output",
    [((24, 32), (24, 32)), ((20, 27), (20, 27)), ((20, 27), (41, 13)), ((24, 32), (48, 64))],
)
def test_postprocess_to_output_equals_detectron2s(image_size, output):
    """Crop of the padding, then a resize only when the sizes differ: the values of detectron2's
    sem_seg_postprocess (which always resizes), as a contiguous tensor."""
    padded = torch.randn(3, 24, 32, generator=torch.Generator().manual_seed(output[0]))
    result = postprocess_to_output(padded, image_size, *output)
    expected = sem_seg_postprocess(padded, image_size, *output)
    assert result.shape == (3, *output) and result.is_contiguous()
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-6)
