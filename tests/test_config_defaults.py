"""Every default of the full config (detectron2's ``get_cfg()`` + ``add_semask_config``) is pinned
in ``tests/config_defaults.json``, so that a changed, added or dropped default is a reviewed change.

After a deliberate change, regenerate the snapshot and commit it with the change:

    python tests/test_config_defaults.py --update
"""

import json
import sys
from pathlib import Path
from typing import Any, Dict, List

from conftest import semask_cfg
from detectron2.config import CfgNode

SNAPSHOT = Path(__file__).resolve().parent / "config_defaults.json"


def _plain(value: Any) -> Any:
    """JSON-comparable value: tuples become lists (JSON has no tuples)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def flatten(cfg: CfgNode, prefix: str = "") -> Dict[str, Any]:
    """Dotted key -> default value of every leaf of ``cfg``."""
    flat: Dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, CfgNode):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = _plain(value)
    return flat


def differences(expected: Dict[str, Any], actual: Dict[str, Any]) -> List[str]:
    """One line per added, removed or changed key."""
    lines = [f"added {k} = {actual[k]!r}" for k in sorted(set(actual) - set(expected))]
    lines += [f"removed {k} (was {expected[k]!r})" for k in sorted(set(expected) - set(actual))]
    lines += [
        f"changed {k}: {expected[k]!r} -> {actual[k]!r}"
        for k in sorted(set(expected) & set(actual))
        if expected[k] != actual[k] or type(expected[k]) is not type(actual[k])
    ]
    return lines


def test_every_default_equals_the_snapshot():
    expected = json.loads(SNAPSHOT.read_text())
    diff = differences(expected, flatten(semask_cfg()))
    assert not diff, (
        f"config defaults differ from {SNAPSHOT.name} (if deliberate, run "
        "`python tests/test_config_defaults.py --update` and commit it):\n" + "\n".join(diff)
    )


def test_differences_name_added_removed_and_changed_keys():
    old = {"A.X": 1, "A.Y": [1, 2], "B": "s"}
    new = {"A.X": 1.0, "A.Y": [1, 3], "C": None}
    assert differences(old, new) == [
        "added C = None",
        "removed B (was 's')",
        "changed A.X: 1 -> 1.0",
        "changed A.Y: [1, 2] -> [1, 3]",
    ]


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_config_defaults.py --update")
    SNAPSHOT.write_text(json.dumps(flatten(semask_cfg()), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
