"""The end-of-training report of bad training samples skipped (``DATALOADER.BAD_SAMPLE_POLICY``)."""

import logging

from detectron2.engine import HookBase
from detectron2.utils import comm

from ..data.mapper import BadSampleCounter


class BadSampleReport(HookBase):
    """Log, after training (finished or failed), how many bad samples the mappers skipped."""

    def __init__(self, counter: BadSampleCounter) -> None:
        self.counter = counter

    def after_train(self) -> None:
        count = self.counter.count
        if count == 0:
            return
        where = f" on rank {comm.get_rank()}" if comm.get_world_size() > 1 else ""
        logging.getLogger(__name__).warning(
            f"skipped {count} bad training samples{where} (DATALOADER.BAD_SAMPLE_POLICY skip); "
            "see the warnings above"
        )
