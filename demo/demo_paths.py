"""File paths of demo/demo.py: the images named by --input and the files each one's results are
written to under --output."""

import glob
import logging
from collections import Counter
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

logger = logging.getLogger("semask.demo")

IMAGE_SUFFIXES = {".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}


def expand_inputs(patterns: Sequence[str]) -> Tuple[List[Path], List[str]]:
    """Files named by ``patterns`` (files, globs, folders: their files with an image suffix), each
    once, in order; and the patterns that matched nothing."""
    files, unmatched = {}, []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file())
            others = [p.name for p in found if p.suffix.lower() not in IMAGE_SUFFIXES]
            if others:
                logger.warning(f"ignoring files without an image suffix in {path}: {others}")
            found = [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES]
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        files.update((p.resolve(), p) for p in found)
        if not found:
            unmatched.append(pattern)
    return list(files.values()), unmatched


def _output_stem(path: Path, level: int) -> str:
    """Level 0: the stem (``x/a.jpg`` -> ``a``); 1: the name (``a_jpg``); n > 1: the name after
    its n - 1 closest folders (``x_a_jpg``)."""
    if level == 0:
        return path.stem
    folders = path.resolve().parent.parts[1:]
    return "_".join(folders[max(len(folders) - level + 1, 0) :] + (path.name.replace(".", "_"),))


def output_stems(sources: Sequence[Path]) -> Dict[Path, str]:
    """A distinct output stem for each of ``sources``, from the whole list (so independent of its
    order and of which files are later skipped).

    A unique stem is kept (``a.jpg`` -> ``a``); inputs sharing one get their name with ``_`` for
    ``.`` (``a.jpg``, ``a.png`` -> ``a_jpg``, ``a_png``), and if that is shared too, the names of
    as many parent folders as tell them apart (``x/a.jpg``, ``y/a.jpg`` -> ``x_a_jpg``,
    ``y_a_jpg``). Names still shared (only possible for contrived file names) get ``_2``, ``_3``..
    in the order of their full paths.
    """
    levels = {path: 0 for path in sources}
    deepest = max((len(path.resolve().parts) for path in sources), default=0)
    for _ in range(deepest):
        stems = {path: _output_stem(path, level) for path, level in levels.items()}
        counts = Counter(stems.values())
        shared = [path for path, stem in stems.items() if counts[stem] > 1]
        if not shared:
            return stems
        for path in shared:
            levels[path] += 1
    stems = {path: _output_stem(path, level) for path, level in levels.items()}
    seen: Counter = Counter()
    for path in sorted(stems, key=lambda p: str(p.resolve())):
        seen[stems[path]] += 1
        if seen[stems[path]] > 1:
            stems[path] = f"{stems[path]}_{seen[stems[path]]}"
    return stems


def output_paths(output: Path, stem: str, single: bool) -> Tuple[Path, Path, Path]:
    """(overlay, priors figure, label PNG) paths for the input of output stem ``stem``.

    ``output`` is the overlay file itself for a single input with an image suffix, otherwise a
    folder that gets ``<stem>.png``; the others are ``<main>_priors`` and ``<main>_labels.png``.
    """
    main = output if single and output.suffix.lower() in IMAGE_SUFFIXES else output / f"{stem}.png"
    main.parent.mkdir(parents=True, exist_ok=True)
    return (
        main,
        main.with_name(f"{main.stem}_priors{main.suffix}"),
        main.with_name(f"{main.stem}_labels.png"),
    )
