"""Make tests/fixtures/fork_yamls/: the architecture keys of every published Detectron2-fork YAML.

Needs (outside this repository) the Picsart-AI-Research/SeMask-Segmentation checkout at commit
16539be7df1e33a469da508091156e791e90ca2d, passed as ``--forks``, and detectron2 0.6:

    python tools/reference_fixtures/fork_yaml_facts.py --forks <SeMask-Segmentation> \
        --out tests/fixtures/fork_yamls

For each YAML under ``configs/`` of the SeMask-MaskFormer, SeMask-FAPN/SeMask-Mask2Former and
SeMask-Mask2Former trees, the file's ``_BASE_`` chain is resolved with detectron2's loader (which
evaluates the forks' ``!!python`` tags) and what the chain sets in the architecture sections of
``MODEL`` is written, without ``_BASE_``, to ``<out>/<tree>/<path>``. Merging the written file
into a config sets the same architecture keys as merging the fork's own file.
"""

import argparse
from pathlib import Path

import yaml
from detectron2.config import CfgNode

TREES = ("SeMask-MaskFormer", "SeMask-FAPN/SeMask-Mask2Former", "SeMask-Mask2Former")
MODEL_KEYS = ("META_ARCHITECTURE", "BACKBONE", "SWIN", "SEM_SEG_HEAD", "MASK_FORMER")
HEADER = "# Architecture keys set by {source} (fork commit {commit}); made by {script}.\n"
COMMIT = "16539be7df1e33a469da508091156e791e90ca2d"


def facts(path: Path) -> dict:
    """The ``MODEL`` architecture keys that ``path`` (with its bases) sets."""
    loaded = CfgNode.load_yaml_with_base(str(path), allow_unsafe=True)
    model = loaded.get("MODEL", {})
    kept = {key: model[key] for key in MODEL_KEYS if key in model}
    if "BACKBONE" in kept:
        kept["BACKBONE"] = {"NAME": kept["BACKBONE"]["NAME"]}
    return {"MODEL": kept}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forks", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for tree in TREES:
        root = args.forks / tree
        for path in sorted((root / "configs").rglob("*.yaml")):
            relative = path.relative_to(root)
            target = args.out / tree / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            header = HEADER.format(
                source=f"{tree}/{relative.as_posix()}",
                commit=COMMIT,
                script="tools/reference_fixtures/fork_yaml_facts.py",
            )
            target.write_text(
                header + yaml.safe_dump(facts(path), sort_keys=True, default_flow_style=None)
            )


if __name__ == "__main__":
    main()
