#!/usr/bin/env python
"""Draw the training curves (loss terms, learning rate, validation mIoU) of a training output
folder from its ``metrics.json``.

    python tools/plot_curves.py OUTPUT_DIR [--output PNG]

Writes ``OUTPUT_DIR/training_curves.png`` by default (training writes it too, when it ends).
"""

import argparse
import sys
from pathlib import Path
from typing import List

from semask.curves import write_training_curves


def main(argv: List[str]) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="a training output folder (holds metrics.json)")
    parser.add_argument("--output", type=Path, help="PNG to write (default: in OUTPUT_DIR)")
    args = parser.parse_args(argv)
    try:
        path = write_training_curves(args.output_dir, args.output)
    except (OSError, ValueError) as error:
        sys.exit(f"plot_curves: {error}")
    print(f"training curves written to {path}")
    return path


if __name__ == "__main__":
    main(sys.argv[1:])
