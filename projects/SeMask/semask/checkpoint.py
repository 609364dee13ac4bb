"""Checkpoint files read without running code they carry, and the one SeMask checkpointer.

:func:`load_checkpoint_file` is the only reader of weight files: ``.pth``/``.pt`` through
``torch.load(weights_only=True)``, ``.pkl`` (detectron2 / Caffe2 model zoo) through an unpickler
that admits only numpy arrays, numbers, strings and plain containers, ``.safetensors`` through
safetensors. :class:`SeMaskCheckpointer` uses it for training, evaluation, resuming and the
predictor.
"""

import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as _save_safetensors_file
from torch import nn

from .io import AtomicWritePathManager, atomic_path, remove_partial_files
from .modeling.heads.semantic_fpn_convert import convert_semask_fpn_mmseg, is_mmseg_semask_fpn

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
SUFFIXES = (".pth", ".pt", ".pkl", ".safetensors")
UNSAFE_HINT = (
    "set MODEL.ALLOW_UNSAFE_PICKLE True (tools/convert_weights.py: --allow-pickle) only if you "
    "trust the file: full unpickling runs any code the file carries"
)

# The globals a pickle of plain weights needs: containers, numbers, strings, numpy arrays, dtypes
# and scalars (numpy 1.x pickles name numpy.core, numpy 2.x numpy._core), protocol-2 bytes.
_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "bytes", "bytearray", "str")
_BUILTINS += ("int", "float", "complex", "bool")
_NUMPY_CORE = (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
_SAFE_GLOBALS = frozenset(
    [("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict")]
    + [("_codecs", "encode")]
    + [("builtins", name) for name in _BUILTINS]
    + [(f"numpy.{core}.{mod}", name) for core in ("core", "_core") for mod, name in _NUMPY_CORE]
)


class WeightsError(ValueError):
    """A checkpoint or ``MODEL.WEIGHTS`` is missing, unreadable, unsafe or does not fit."""


class UnreadableCheckpointError(WeightsError):
    """A checkpoint file is truncated, corrupt or of no known format."""


class UnsafeCheckpointError(WeightsError):
    """A checkpoint needs Python globals that plain weights never need (loading could run code)."""


class NonFiniteWeightsError(WeightsError, FloatingPointError):
    """Weights hold NaN or infinite values."""


def resolve_weights(weights: str) -> Optional[str]:
    """Local file of ``MODEL.WEIGHTS`` (a path or URL), or None when empty (random weights).

    Raises :class:`WeightsError` naming ``weights`` if it cannot be fetched or is not a file.
    """
    if not weights:
        logger.warning("MODEL.WEIGHTS is empty: the model keeps its random initial weights")
        return None
    try:
        local_path = PathManager.get_local_path(weights)
    except Exception as error:  # any PathManager handler failure
        raise WeightsError(f"MODEL.WEIGHTS {weights!r} could not be fetched: {error}") from error
    if not os.path.isfile(local_path):
        raise WeightsError(f"MODEL.WEIGHTS {weights!r} is no file")
    return local_path


def _refused(path: PathLike, needs: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"checkpoint {path} was refused: it needs {needs}, which plain weights never do; "
        + UNSAFE_HINT
    )


class _WeightsUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, numbers, strings and plain containers; refuses any other global."""

    def __init__(self, file: Any, path: PathLike) -> None:
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise _refused(self.path, f"the Python global '{module}.{name}'")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core.") :]  # numpy 2 renamed numpy.core
        return super().find_class(module, name)


def _load_torch(path: Path, allow_unsafe_pickle: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_unsafe_pickle)
    except pickle.UnpicklingError as error:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if refused:
            raise _refused(path, f"the Python global '{refused.group(1)}'") from None
        raise


def _load_pickle(path: Path, allow_unsafe_pickle: bool) -> Any:
    with path.open("rb") as f:
        if allow_unsafe_pickle:
            return pickle.load(f, encoding="latin1")
        return _WeightsUnpickler(f, path).load()


def load_checkpoint_file(path: PathLike, *, allow_unsafe_pickle: bool = False) -> Dict[str, Any]:
    """The dict stored in the local checkpoint file ``path``, read without running its code.

    ``.pth``/``.pt``: ``torch.load(weights_only=True)``; ``.pkl``: pickle (latin1) admitting only
    numpy arrays/dtypes/scalars, numbers, strings and plain containers; ``.safetensors``: its
    tensors. ``allow_unsafe_pickle`` unpickles ``.pth``/``.pkl`` fully (runs any code the file
    carries) and warns. Raises :class:`UnsafeCheckpointError` naming the file and the refused
    global, :class:`UnreadableCheckpointError` naming the file for anything unreadable.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UnreadableCheckpointError(
            f"checkpoint {path} has suffix {path.suffix!r}; accepted are {', '.join(SUFFIXES)}"
        )
    if allow_unsafe_pickle and suffix != ".safetensors":
        logger.warning(f"Unpickling {path} fully (MODEL.ALLOW_UNSAFE_PICKLE): it may run code")
    try:
        if suffix == ".safetensors":
            data = load_safetensors(str(path), device="cpu")
        elif suffix == ".pkl":
            data = _load_pickle(path, allow_unsafe_pickle)
        else:
            data = _load_torch(path, allow_unsafe_pickle)
    except (WeightsError, FileNotFoundError):
        raise
    except Exception as error:  # torch, pickle and safetensors raise many types for bad files
        raise UnreadableCheckpointError(
            f"checkpoint {path} is not a readable checkpoint ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(data, dict):
        raise UnreadableCheckpointError(
            f"checkpoint {path} holds a {type(data).__name__}, not a dict of weights"
        )
    return data


def save_safetensors(state: Mapping[str, torch.Tensor], path: PathLike) -> None:
    """Write the tensors of ``state`` to ``path`` (``.safetensors``) atomically."""
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in state.items()}
    with atomic_path(path) as tmp:
        _save_safetensors_file(tensors, str(tmp), metadata={"format": "pt"})


def first_non_finite(state: Mapping[str, Any]) -> Optional[Tuple[str, int]]:
    """(name of the first floating tensor of ``state`` holding NaN/inf, how many do), or None."""
    bad = [
        key
        for key, value in state.items()
        if isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and not torch.isfinite(value).all()
    ]
    return (bad[0], len(bad)) if bad else None


def _checkpoint_order(path: str) -> Tuple[float, float]:
    """Sort key of ``model_<iteration>.pth`` / ``model_final.pth``: iteration, then mtime."""
    stem = Path(path).stem[len("model_") :]
    iteration = float("inf") if stem == "final" else float(stem) if stem.isdigit() else -1.0
    return iteration, os.path.getmtime(path)


class SeMaskCheckpointer(DetectionCheckpointer):
    """detectron2's checkpointer reading files with :func:`load_checkpoint_file` only, writing them
    atomically (its ``path_manager`` is an :class:`AtomicWritePathManager`), never writing
    non-finite weights, and resuming from the newest usable checkpoint.

    ``strict``: a checkpoint that leaves model parameters unloaded or mis-shaped is an error
    (:class:`WeightsError` listing the first keys with shapes and the count); otherwise they are
    logged with the count. On the main process, temporaries of an interrupted save in
    ``save_dir`` are removed when the checkpointer is created.
    """

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        strict: bool = False,
        allow_unsafe_pickle: bool = False,
        save_to_disk: Optional[bool] = None,
        **checkpointables: Any,
    ) -> None:
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.path_manager = AtomicWritePathManager(self.path_manager)
        self.logger = logger
        self.strict = strict
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self.loaded_file: Optional[str] = None
        if save_dir and self.save_to_disk:
            for path in remove_partial_files(save_dir):
                self.logger.warning(f"Removed {path}, left by an interrupted checkpoint save")

    def _load_file(self, filename: str) -> Dict[str, Any]:
        data = load_checkpoint_file(filename, allow_unsafe_pickle=self.allow_unsafe_pickle)
        self.loaded_file = filename
        if Path(filename).suffix.lower() == ".pkl":
            # The model-zoo handling of detectron2 0.6 DetectionCheckpointer._load_file.
            if "model" in data and "__author__" in data:
                self.logger.info(f"Reading a file from '{data['__author__']}'")
                return data
            data = data.get("blobs", data)
            model = {k: v for k, v in data.items() if not k.endswith("_momentum")}
            return {"model": model, "__author__": "Caffe2", "matching_heuristics": True}
        if is_mmseg_semask_fpn(data):
            return {"model": self._convert_mmseg(data, filename), "matching_heuristics": False}
        return data if "model" in data else {"model": data}

    def _convert_mmseg(self, data: Dict[str, Any], filename: str) -> Dict[str, torch.Tensor]:
        """A SeMask-FPN mmseg checkpoint renamed whole to the model's names (strict)."""
        try:
            state = convert_semask_fpn_mmseg(data, self.model)
        except (KeyError, ValueError, TypeError) as error:
            raise WeightsError(f"mmseg checkpoint {filename}: {error}") from error
        self.logger.info(f"Converted the SeMask-FPN mmseg checkpoint {filename} ({len(state)})")
        return state

    def _load_model(self, checkpoint: Dict[str, Any]) -> Any:
        self._convert_ndarray_to_tensor(checkpoint["model"])
        non_finite = first_non_finite(checkpoint["model"])
        if non_finite is not None:
            raise NonFiniteWeightsError(
                f"checkpoint {self.loaded_file} holds non-finite weights: {non_finite[0]} "
                f"({non_finite[1]} tensors with NaN/inf)"
            )
        incompatible = super()._load_model(checkpoint)
        model_shapes = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        problems = [
            f"{key}: checkpoint {tuple(ckpt)} vs model {tuple(mine)}"
            for key, ckpt, mine in incompatible.incorrect_shapes
        ]
        reshaped = {key for key, _, _ in incompatible.incorrect_shapes}
        problems += [
            f"missing {key} (model {model_shapes.get(key)})"
            for key in incompatible.missing_keys
            if key not in reshaped
        ]
        if problems:
            message = (
                f"checkpoint {self.loaded_file} does not fit the model built from the config: "
                f"{len(problems)} of {len(model_shapes)} entries not loaded: "
                + "; ".join(problems[:5])
                + ("; ..." if len(problems) > 5 else "")
            )
            if self.strict:
                raise WeightsError(message)
            self.logger.warning(message + " (they keep their initial values)")
        return incompatible

    def save(self, name: str, **kwargs: Any) -> None:
        """fvcore's save, writing ``<save_dir>/<name>.pth`` and the ``last_checkpoint`` tag
        atomically (through ``path_manager``); raises :class:`NonFiniteWeightsError` (a
        ``FloatingPointError``), writing nothing, if a model weight holds NaN/inf."""
        if self.save_dir and self.save_to_disk:
            self._refuse_non_finite(os.path.join(self.save_dir, f"{name}.pth"))
        super().save(name, **kwargs)

    def _refuse_non_finite(self, save_file: str) -> None:
        non_finite = first_non_finite(self.model.state_dict())
        if non_finite is not None:
            raise NonFiniteWeightsError(
                f"not saving {save_file}: weight {non_finite[0]} holds NaN/inf "
                f"({non_finite[1]} tensors do); {self.get_checkpoint_file() or 'no checkpoint'} "
                "stays the last checkpoint"
            )

    def resume_candidates(self) -> List[str]:
        """Checkpoints of ``save_dir`` to resume from, best first: the one ``last_checkpoint``
        names, then the other ``model_*.pth`` newest first."""
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return []
        others = sorted(
            (
                path
                for path in self.get_all_checkpoint_files()
                if os.path.basename(path).startswith("model_")
            ),
            key=_checkpoint_order,
            reverse=True,
        )
        tagged = self.get_checkpoint_file() if super().has_checkpoint() else ""
        return ([tagged] if tagged else []) + [path for path in others if path != tagged]

    def has_checkpoint(self) -> bool:
        return bool(self.resume_candidates())

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """With ``resume``, load the newest checkpoint of ``save_dir`` that is readable and finite
        (a WARNING names each one skipped and why); else, or if there is none, load only the
        model from ``path``. Raises :class:`WeightsError` if checkpoints exist and none is usable.
        """
        candidates = self.resume_candidates() if resume else []
        if not candidates:
            return self.load(path, checkpointables=[])
        skipped = []
        for candidate in candidates:
            try:
                if not os.path.isfile(candidate):
                    raise UnreadableCheckpointError(f"checkpoint {candidate} does not exist")
                return self.load(candidate)
            except (UnreadableCheckpointError, NonFiniteWeightsError) as error:
                self.logger.warning(f"Resume: skipping {candidate}: {error}")
                skipped.append(str(error))
        raise WeightsError(
            f"no usable checkpoint to resume from in {self.save_dir}: " + "; ".join(skipped)
        )
