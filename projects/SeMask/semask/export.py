"""Export of a SeMask model's semantic inference to ``torch.export`` and ONNX, with one contract.

Both formats take one **uint8 image [3, H, W] in the config's ``INPUT.FORMAT``** channel order and
return the **semantic scores [K, H, W]** (float32) that the eager model returns as ``sem_seg`` for
that image with ``height=H, width=W``: normalisation, padding, cropping and resizing are in the
graph. H x W is fixed at export in both formats (see docs/DEPLOY.md for why).
:class:`ExportedSegmenter` runs either file and checks its input first.
"""

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .modeling.backbone.common import set_sdpa

# ONNX opset of exported graphs (19 brings DeformConv, FaPN's DCNv2).
OPSET = 20
INPUT_NAME = "image"
OUTPUT_NAME = "sem_seg"


def check_image(
    image: Union[torch.Tensor, np.ndarray],
    size: Optional[Tuple[int, int]] = None,
    source: str = "the exported model",
) -> None:
    """Raise a ValueError unless ``image`` is uint8 [3, H, W] (and [H, W] equals ``size``)."""
    shape = tuple(image.shape)
    dtype = str(image.dtype).replace("torch.", "")
    if dtype != "uint8":
        raise ValueError(f"{source}: input must be uint8 [3, H, W], got dtype {dtype}")
    if len(shape) != 3 or shape[0] != 3:
        raise ValueError(f"{source}: input must be uint8 [3, H, W], got shape {list(shape)}")
    if size is not None and shape[1:] != tuple(size):
        raise ValueError(
            f"{source}: was exported for H x W = {size[0]} x {size[1]} (fixed), got an image of "
            f"{shape[1]} x {shape[2]}"
        )


class SemanticScores(nn.Module):
    """The exported function: ``image`` uint8 [3, H, W] in ``INPUT.FORMAT`` -> scores [K, H, W].

    Wraps a built SeMask model (``SeMaskMaskFormer`` or ``SeMaskFPN``, in eval mode) and returns
    exactly its ``sem_seg`` for ``{"image": image, "height": H, "width": W}``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_image(image, source=type(self).__name__)
        height, width = image.shape[-2], image.shape[-1]
        return self.model([{"image": image, "height": height, "width": width}])[0]["sem_seg"]


def example_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A random uint8 [3, height, width] image to trace with."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)


def export_program(model: nn.Module, height: int, width: int) -> torch.export.ExportedProgram:
    """``torch.export`` of :class:`SemanticScores` of ``model`` for fixed ``height`` x ``width``."""
    with torch.no_grad():
        return torch.export.export(
            SemanticScores(model), (example_image(height, width),), strict=False
        )


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected| (the measure of export parity)."""
    scale = expected.abs().max().clamp(min=torch.finfo(expected.dtype).tiny)
    return float((actual - expected).abs().max() / scale)


def export_onnx(
    model: nn.Module, height: int, width: int, path: Union[str, Path], *, opset: int = OPSET
) -> Path:
    """Write the ONNX graph (one file, weights inside) of :class:`SemanticScores` of ``model`` for
    a fixed ``height`` x ``width`` to ``path``.

    Attention runs as matmul + softmax while exporting (the exporter translates only 4-D SDPA);
    the model's own SDPA setting is restored afterwards.
    """
    sdpa_modules = [m for m in model.modules() if getattr(m, "use_sdpa", False)]
    set_sdpa(model, False)
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                SemanticScores(model),
                (example_image(height, width),),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                external_data=False,
                verbose=False,
            )
    finally:
        for module in sdpa_modules:
            module.use_sdpa = True
    path = Path(path)
    program.save(str(path), external_data=False)
    return path


class ExportedSegmenter:
    """Run an exported file (``.pt2`` from :func:`export_program` saved with ``torch.export.save``,
    or ``.onnx`` in ONNX Runtime): ``segmenter(image)`` -> scores [K, H, W] float32 tensor.

    The input is checked first (:func:`check_image`; for ONNX also the fixed H x W), so a wrong
    image is refused naming the file and what was expected.
    """

    def __init__(
        self, path: Union[str, Path], providers: Sequence[str] = ("CPUExecutionProvider",)
    ) -> None:
        """``providers``: ONNX Runtime execution providers, in order of preference."""
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"exported model {self.path} does not exist")
        self.size: Optional[Tuple[int, int]] = None
        if self.path.suffix == ".onnx":
            try:
                import onnxruntime
            except ImportError as error:
                raise ImportError(
                    f"running {self.path} needs onnxruntime: pip install -r requirements-export.txt"
                ) from error
            self.session = onnxruntime.InferenceSession(str(self.path), providers=list(providers))
            shape = self.session.get_inputs()[0].shape
            if all(isinstance(side, int) for side in shape[1:]):
                self.size = (shape[1], shape[2])
        elif self.path.suffix == ".pt2":
            program = torch.export.load(str(self.path))
            user_inputs = set(program.graph_signature.user_inputs)
            image = next(n for n in program.graph.nodes if n.name in user_inputs)
            self.size = tuple(int(side) for side in image.meta["val"].shape[1:])
            self.module = program.module()
        else:
            raise ValueError(f"exported model {self.path}: suffix must be .onnx or .pt2")

    def __call__(self, image: Union[torch.Tensor, np.ndarray]) -> torch.Tensor:
        check_image(image, self.size, source=str(self.path))
        if self.path.suffix == ".onnx":
            array = image.numpy() if isinstance(image, torch.Tensor) else image
            feed = {INPUT_NAME: np.ascontiguousarray(array)}
            return torch.from_numpy(self.session.run([OUTPUT_NAME], feed)[0])
        with torch.no_grad():
            return self.module(torch.as_tensor(image))
