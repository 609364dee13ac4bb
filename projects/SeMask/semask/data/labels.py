"""How a data set's label files store classes, and their mapping to training labels.

Training, evaluation and the label checks all read stored label maps through one
:class:`LabelMapping`, so they see the same labels: class ids ``0..K-1`` and the model's ignore
value (``MODEL.SEM_SEG_HEAD.IGNORE_VALUE``, 255 by default).
"""

from dataclasses import dataclass
from typing import Tuple

import numpy as np

__all__ = ["DEFAULT_LABEL_MAPPING", "IGNORE_LABEL", "LABEL_MAPPING_KEY", "LabelMapping"]

# Value of unlabelled pixels in training labels (the metadata ``ignore_label`` of every data set
# registered by this project).
IGNORE_LABEL = 255
# Key of a dataset dict that holds the :class:`LabelMapping` of its label file.
LABEL_MAPPING_KEY = "label_mapping"


@dataclass(frozen=True)
class LabelMapping:
    """How stored label maps encode classes.

    * ``ignore_value``: stored value of unlabelled pixels;
    * ``reduce_zero_label`` (mmseg's convention): 0 is unlabelled as well and class ``k`` is
      stored as ``k + 1``.

    The default stores class ids ``0..K-1`` and 255 for unlabelled pixels, as training uses them.
    """

    ignore_value: int = IGNORE_LABEL
    reduce_zero_label: bool = False

    def stored_class_ids(self, num_classes: int) -> Tuple[int, int]:
        """First and last stored value of a class id, for ``num_classes`` classes."""
        offset = int(self.reduce_zero_label)
        return offset, num_classes - 1 + offset

    def describe(self, num_classes: int) -> str:
        """The allowed stored values in words, for error messages."""
        first, last = self.stored_class_ids(num_classes)
        if not self.reduce_zero_label:
            return f"a class id {first}..{last}"
        return (
            f"a class id {first}..{last} (reduce_zero_label: class k stored as k+1, 0 unlabelled)"
        )

    def invalid_values(self, stored: np.ndarray, num_classes: int) -> np.ndarray:
        """Sorted distinct values of ``stored`` [H, W] that are neither a stored class id nor an
        unlabelled value."""
        first, last = self.stored_class_ids(num_classes)
        valid = ((stored >= first) & (stored <= last)) | (stored == self.ignore_value)
        if self.reduce_zero_label:
            valid |= stored == 0
        return np.unique(stored[~valid])

    def apply(self, stored: np.ndarray, ignore_label: int = IGNORE_LABEL) -> np.ndarray:
        """Training labels int64 [H, W] (class ids ``0..K-1``, ``ignore_label`` for unlabelled
        pixels) of a stored label map [H, W] whose values :meth:`invalid_values` accepts."""
        labels = stored.astype(np.int64)
        unlabelled = labels == self.ignore_value
        if self.reduce_zero_label:
            unlabelled |= labels == 0
            labels -= 1
        labels[unlabelled] = ignore_label
        return labels


# Labels stored as training uses them: class ids 0..K-1 and 255.
DEFAULT_LABEL_MAPPING = LabelMapping()
