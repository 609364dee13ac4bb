"""Mask AP of the thing classes of a panoptic data set, with detectron2's ``COCOEvaluator``.

detectron2's evaluator expects thing classes numbered ``0..T-1``. In a panoptic data set they are
numbered among all ``K`` classes (``thing_dataset_id_to_contiguous_id``): COCO's 80 things come
first, ADE20K's 100 are spread over its 150 classes. :class:`ThingInstanceEvaluator` renumbers the
predicted things ``0..T-1`` in the order of their data set ids (the order of COCO's categories)
and drops predictions of stuff classes, which no instance annotation can match; it scores them
under metadata of their own (:func:`register_thing_metadata`), the data set's is left as it is.

Ground truth: the data set's COCO instance annotations (metadata ``json_file``) where it has
them, else the thing segments of its panoptic PNGs (:func:`panoptic_instances_coco`).
"""

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.evaluation import COCOEvaluator

from .data.image_io import read_image
from .data.panoptic_labels import rgb_to_id
from .io import atomic_open

# COCO instance JSON derived from a panoptic data set, in the evaluator's output folder.
PANOPTIC_INSTANCES_JSON = "{}_instances_from_panoptic.json"
# Name of the metadata of a data set's things numbered 0..T-1 (register_thing_metadata).
THING_METADATA_SUFFIX = ":things"


def _things_by_dataset_id(metadata: Metadata) -> List[Any]:
    """(data set id, contiguous id) of every thing class, by data set id."""
    return sorted(metadata.thing_dataset_id_to_contiguous_id.items())


def _coco_annotation(mask: np.ndarray, segment: Mapping[str, Any]) -> Dict[str, Any]:
    """A COCO instance annotation (RLE ``segmentation``, ``area``, XYWH ``bbox``) of one
    segment's mask bool [H, W]; ``image_id``, ``id`` and ``category_id`` are added by the caller."""
    rle = mask_util.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {
        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
        "area": int(mask.sum()),
        "bbox": [float(v) for v in mask_util.toBbox(rle)],
        "iscrowd": int(segment.get("iscrowd", 0)),
    }


def panoptic_instances_coco(dataset_name: str) -> Dict[str, List[Dict[str, Any]]]:
    """COCO instance ground truth (``images``, ``annotations``, ``categories``) of a panoptic
    data set: one annotation per thing segment of each image's panoptic PNG, crowd segments with
    ``iscrowd`` 1 (COCO's evaluation ignores detections on them).

    Image ids are the data set dicts' ``image_id`` (what the evaluator reads from its inputs);
    category ids are the data set ids of the thing classes, named from ``stuff_classes`` (all
    ``K`` classes in a panoptic data set's metadata).
    """
    metadata = MetadataCatalog.get(dataset_name)
    things = _things_by_dataset_id(metadata)
    dataset_id_of = {contiguous: dataset_id for dataset_id, contiguous in things}
    images, annotations = [], []
    for record in DatasetCatalog.get(dataset_name):
        segment_ids = rgb_to_id(read_image(record["pan_seg_file_name"], format="RGB"))
        height, width = segment_ids.shape
        images.append(
            {
                "id": record["image_id"],
                "file_name": os.path.basename(record["file_name"]),
                "height": height,
                "width": width,
            }
        )
        for segment in record["segments_info"]:
            mask = segment_ids == segment["id"]
            if segment["category_id"] not in dataset_id_of or not mask.any():
                continue
            annotation = _coco_annotation(mask, segment)
            annotation.update(
                id=len(annotations) + 1,  # COCOeval takes id 0 for "unmatched"
                image_id=record["image_id"],
                category_id=dataset_id_of[segment["category_id"]],
            )
            annotations.append(annotation)
    names = metadata.stuff_classes
    categories = [{"id": dataset_id, "name": names[c]} for dataset_id, c in things]
    return {"images": images, "annotations": annotations, "categories": categories}


def _ground_truth_json(dataset_name: str, output_dir: Optional[str]) -> str:
    """The data set's COCO instance JSON: metadata ``json_file``, else the one
    :func:`panoptic_instances_coco` derives, written anew into ``output_dir``."""
    json_file = MetadataCatalog.get(dataset_name).get("json_file")
    if json_file is not None:
        return json_file
    if output_dir is None:
        raise ValueError(
            f"instance evaluation of {dataset_name!r}: the data set has no COCO instance "
            "annotations (metadata json_file), so they are derived from its panoptic PNGs into "
            "output_dir, which must be given"
        )
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, PANOPTIC_INSTANCES_JSON.format(dataset_name))
    with atomic_open(path) as file:
        json.dump(panoptic_instances_coco(dataset_name), file)
    return path


def register_thing_metadata(dataset_name: str, output_dir: Optional[str]) -> str:
    """Register (anew) and name the metadata under which ``COCOEvaluator`` scores the data set's
    things: its ground truth (:func:`_ground_truth_json`) and its thing classes numbered
    ``0..T-1`` by data set id. The data set's own metadata is left as it is."""
    metadata = MetadataCatalog.get(dataset_name)
    things = _things_by_dataset_id(metadata)
    json_file = _ground_truth_json(dataset_name, output_dir)
    name = dataset_name + THING_METADATA_SUFFIX
    MetadataCatalog.pop(name, None)
    MetadataCatalog.get(name).set(
        json_file=json_file,
        thing_dataset_id_to_contiguous_id={d: index for index, (d, _) in enumerate(things)},
        thing_classes=[metadata.stuff_classes[contiguous] for _, contiguous in things],
    )
    return name


class ThingInstanceEvaluator(COCOEvaluator):
    """COCO mask AP (``tasks``, default ``("segm",)``; the official COCO API) of the thing classes
    of a panoptic data set, from the model's ``instances`` (``pred_classes`` contiguous among all
    ``K`` classes). Results are named by class as in ``COCOEvaluator``."""

    def __init__(
        self,
        dataset_name: str,
        output_dir: Optional[str] = None,
        *,
        tasks: Sequence[str] = ("segm",),
        distributed: bool = True,
    ) -> None:
        things = _things_by_dataset_id(MetadataCatalog.get(dataset_name))
        self._thing_index = {contiguous: index for index, (_, contiguous) in enumerate(things)}
        super().__init__(
            register_thing_metadata(dataset_name, output_dir),
            tasks=tuple(tasks),
            distributed=distributed,
            output_dir=output_dir,
            use_fast_impl=False,
        )

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Add each image's thing ``instances`` (renumbered ``0..T-1``) to the predictions."""
        super().process(inputs, [self._things_only(output) for output in outputs])

    def _things_only(self, output: Dict[str, Any]) -> Dict[str, Any]:
        if "instances" not in output:
            return output
        instances = output["instances"].to(self._cpu_device)
        classes = instances.pred_classes.tolist()
        keep = [i for i, c in enumerate(classes) if c in self._thing_index]
        things = instances[torch.tensor(keep, dtype=torch.long)]
        things.pred_classes = torch.tensor(
            [self._thing_index[classes[i]] for i in keep], dtype=torch.long
        )
        return {**output, "instances": things}
