"""The collector of one config's problems, shared by the start-up checks (:mod:`.validation`,
:mod:`.dataset_checks`)."""

from numbers import Integral, Real
from typing import Any, Callable, List, Sequence

from detectron2.config import CfgNode

from ..config import config_value


def is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


class Checker:
    """Collects ``KEY = value: what is allowed`` problems of one config."""

    def __init__(self, cfg: CfgNode) -> None:
        self.cfg = cfg
        self.problems: List[str] = []

    def get(self, key: str) -> Any:
        return config_value(self.cfg, key)

    def fail(self, key: str, value: Any, allowed: str) -> None:
        self.problems.append(f"{key} = {value!r}: {allowed}")

    def check(self, key: str, ok: Callable[[Any], bool], allowed: str) -> bool:
        value = self.get(key)
        if not ok(value):
            self.fail(key, value, allowed)
            return False
        return True

    def int_at_least(self, key: str, minimum: int) -> bool:
        return self.check(
            key, lambda v: is_int(v) and v >= minimum, f"must be an integer >= {minimum}"
        )

    def number_at_least(self, key: str, minimum: float) -> bool:
        return self.check(key, lambda v: is_number(v) and v >= minimum, f"must be >= {minimum}")

    def fraction(self, key: str) -> bool:
        return self.check(key, lambda v: is_number(v) and 0 <= v <= 1, "must be in [0, 1]")

    def one_of(self, key: str, choices: Sequence[str]) -> bool:
        return self.check(key, lambda v: v in choices, f"must be one of {list(choices)}")

    def stages(self, key: str, minimum: int) -> bool:
        """A list of 4 integers >= ``minimum`` (one per backbone stage)."""
        return self.check(
            key,
            lambda v: len(v) == 4 and all(is_int(x) and x >= minimum for x in v),
            f"must be 4 integers (one per stage) >= {minimum}",
        )
