"""Config keys of the SeMask project, with the defaults of the official SeMask Detectron2 code."""

from typing import Any

from detectron2.config import CfgNode as CN
from detectron2.projects.deeplab import add_deeplab_config


def config_value(cfg: CN, key: str) -> Any:
    """The value of the dotted ``key`` (e.g. ``"MODEL.SWIN.WINDOW_SIZE"``) in ``cfg``."""
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def add_semask_config(cfg: CN) -> None:
    """Add every key SeMask reads to ``cfg`` (in place), including DeepLab's poly-LR keys."""
    add_deeplab_config(cfg)
    _add_input_config(cfg)
    _add_data_config(cfg)
    _add_solver_config(cfg)
    _add_semask_node(cfg)
    _add_cpu_linear_config(cfg)
    _add_swin_config(cfg)
    _add_mit_config(cfg)
    _add_mask_former_config(cfg)
    _add_sem_seg_head_config(cfg)
    _add_checkpoint_config(cfg)
    _add_slide_config(cfg)
    _add_report_config(cfg)


def _add_input_config(cfg: CN) -> None:
    # The training mapper: "mask_former_semantic" gives "instances" (one mask per class present),
    # which SeMaskMaskFormer trains on; "semantic" gives the label map alone (enough for
    # SeMaskFPN); "mask_former_panoptic"/"coco_panoptic_lsj" (one mask per segment) and
    # "mask_former_instance"/"coco_instance_lsj" (one per thing) read panoptic and COCO instance
    # data sets. semask.data.mapper.DATASET_MAPPERS.
    cfg.INPUT.DATASET_MAPPER_NAME = "mask_former_semantic"
    # SSD-style photometric distortion during training.
    cfg.INPUT.COLOR_AUG_SSD = False
    # Pad training images/labels to this multiple (-1: no padding).
    cfg.INPUT.SIZE_DIVISIBILITY = -1
    # Large-scale jitter of the "*_lsj" mappers: output size (square) and scale range.
    cfg.INPUT.IMAGE_SIZE = 1024
    cfg.INPUT.MIN_SCALE = 0.1
    cfg.INPUT.MAX_SCALE = 2.0


def _add_data_config(cfg: CN) -> None:
    # A bad training sample (unreadable or truncated file, image/label size mismatch, label values
    # neither a class id nor the ignore label): "error" stops with a message naming the file,
    # "skip" logs a warning, uses another sample and reports the count at the end of training.
    # Evaluation is always "error" (a skipped image would change the metric).
    cfg.DATALOADER.BAD_SAMPLE_POLICY = "error"


def _add_solver_config(cfg: CN) -> None:
    # Weight decay of embeddings (position tables, query embeddings, level embeddings).
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0
    # "ADAMW" or "SGD".
    cfg.SOLVER.OPTIMIZER = "ADAMW"
    # Learning-rate multiplier of backbone parameters.
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1
    # Autocast dtype when SOLVER.AMP.ENABLED: "float16" (CUDA only) or "bfloat16" (CPU or CUDA).
    cfg.SOLVER.AMP.PRECISION = "float16"


def _add_semask_node(cfg: CN) -> None:
    cfg.MODEL.SEMASK = CN()
    # Backbone stages (0..3) whose semantic layer attends in windows of SEM_WINDOW_SIZE; the
    # others attend globally. Published forks differ: SeMask-Mask2Former/FAPN [0, 1],
    # SeMask-MaskFormer [0, 1, 2], SeMask-FPN per model (README, Configs).
    cfg.MODEL.SEMASK.WINDOWED_STAGES = [0, 1]
    # The four keys below default to None, "not set": set, they win over their published
    # spellings (MODEL.SWIN/MIT.NUM_SEM_BLOCKS and SEM_WINDOW_SIZE of the backbone in use,
    # MODEL.MASK_FORMER.CATE_WEIGHT and TEST.RETURN_PRIOR), which are read otherwise; a conflict
    # is logged as a WARNING (semask.modeling.semantic_prior.settings).
    # SemanticAttention blocks per stage (0: no semantic layers and no priors).
    cfg.MODEL.SEMASK.NUM_SEM_BLOCKS = None
    # Window side of the semantic attention in the WINDOWED_STAGES.
    cfg.MODEL.SEMASK.SEM_WINDOW_SIZE = None
    # Weight of the semantic-prior cross-entropy (loss_cate) in every SeMask model; 0: no loss.
    cfg.MODEL.SEMASK.CATE_WEIGHT = None
    # Inference also returns the aggregated prior "sem_prior" and the raw "stage_priors".
    cfg.MODEL.SEMASK.RETURN_PRIOR = None


def _add_cpu_linear_config(cfg: CN) -> None:
    # What computes the float32 linear layers on the CPU: "onednn" (oneDNN's kernel, faster than
    # torch's MKL product on the AMD EPYC measured; docs/PERFORMANCE.md) or "torch" (F.linear).
    # Same values up to summation order; CUDA, autocast, torch.compile and exports use F.linear.
    cfg.MODEL.CPU_LINEAR = "onednn"


def _add_swin_config(cfg: CN) -> None:
    cfg.MODEL.SWIN = CN()
    # Image size the ImageNet weights were trained at (sizes the absolute position table).
    cfg.MODEL.SWIN.PRETRAIN_IMG_SIZE = 224
    # Patch embedding stride and kernel.
    cfg.MODEL.SWIN.PATCH_SIZE = 4
    # Channels of stage 1 (doubled at every later stage).
    cfg.MODEL.SWIN.EMBED_DIM = 96
    # Swin blocks per stage.
    cfg.MODEL.SWIN.DEPTHS = [2, 2, 6, 2]
    # Attention heads per stage.
    cfg.MODEL.SWIN.NUM_HEADS = [3, 6, 12, 24]
    # Side of the attention windows.
    cfg.MODEL.SWIN.WINDOW_SIZE = 7
    # Hidden width of the MLP as a multiple of the channels.
    cfg.MODEL.SWIN.MLP_RATIO = 4.0
    # Bias on the query/key/value projection.
    cfg.MODEL.SWIN.QKV_BIAS = True
    # Override of the attention scale head_dim ** -0.5 (None: default).
    cfg.MODEL.SWIN.QK_SCALE = None
    # Dropout after MLPs and projections.
    cfg.MODEL.SWIN.DROP_RATE = 0.0
    # Dropout on attention weights.
    cfg.MODEL.SWIN.ATTN_DROP_RATE = 0.0
    # Stochastic depth rate, increased linearly to this value over all blocks.
    cfg.MODEL.SWIN.DROP_PATH_RATE = 0.3
    # Absolute position embedding added after the patch embedding.
    cfg.MODEL.SWIN.APE = False
    # LayerNorm after the patch embedding.
    cfg.MODEL.SWIN.PATCH_NORM = True
    # Stage outputs to return.
    cfg.MODEL.SWIN.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    # Gradient checkpointing of the Swin blocks (saves memory, costs time).
    cfg.MODEL.SWIN.USE_CHECKPOINT = False
    # Published spellings of MODEL.SEMASK.SEM_WINDOW_SIZE and NUM_SEM_BLOCKS (read when those are
    # not set), kept so published YAMLs merge.
    cfg.MODEL.SWIN.SEM_WINDOW_SIZE = 7
    cfg.MODEL.SWIN.NUM_SEM_BLOCKS = 1
    # Stages frozen from the start: -1 none, 0 patch embedding, k >= 2 also stages 1..k-1.
    cfg.MODEL.SWIN.FROZEN_STAGES = -1


def _add_mit_config(cfg: CN) -> None:
    cfg.MODEL.MIT = CN()
    # Channels per stage (MiT-B0: [32, 64, 160, 256]; B1-B5: [64, 128, 320, 512]).
    cfg.MODEL.MIT.EMBED_DIMS = [64, 128, 320, 512]
    # Transformer blocks per stage (B0/B1 [2, 2, 2, 2] ... B5 [3, 6, 40, 3]).
    cfg.MODEL.MIT.DEPTHS = [2, 2, 2, 2]
    # Attention heads per stage.
    cfg.MODEL.MIT.NUM_HEADS = [1, 2, 5, 8]
    # Spatial-reduction ratio of keys/values per stage.
    cfg.MODEL.MIT.SR_RATIOS = [8, 4, 2, 1]
    # Mix-FFN hidden width as a multiple of the channels.
    cfg.MODEL.MIT.MLP_RATIO = 4.0
    # Bias on the query/key/value projections.
    cfg.MODEL.MIT.QKV_BIAS = True
    # Dropout after MLPs and projections.
    cfg.MODEL.MIT.DROP_RATE = 0.0
    # Dropout on attention weights.
    cfg.MODEL.MIT.ATTN_DROP_RATE = 0.0
    # Stochastic depth rate, increased linearly to this value over all blocks.
    cfg.MODEL.MIT.DROP_PATH_RATE = 0.1
    # Stage outputs to return.
    cfg.MODEL.MIT.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    # Published spellings of MODEL.SEMASK.SEM_WINDOW_SIZE and NUM_SEM_BLOCKS (read when those are
    # not set), kept so published YAMLs merge.
    cfg.MODEL.MIT.SEM_WINDOW_SIZE = 7
    cfg.MODEL.MIT.NUM_SEM_BLOCKS = 1


def _add_mask_former_config(cfg: CN) -> None:
    cfg.MODEL.MASK_FORMER = CN()
    # Loss on every intermediate decoder output.
    cfg.MODEL.MASK_FORMER.DEEP_SUPERVISION = True
    # Class weight of the "no object" class in the classification loss.
    cfg.MODEL.MASK_FORMER.NO_OBJECT_WEIGHT = 0.1
    # Loss weights of classification, dice and mask BCE (also the matching costs).
    cfg.MODEL.MASK_FORMER.CLASS_WEIGHT = 1.0
    cfg.MODEL.MASK_FORMER.DICE_WEIGHT = 1.0
    cfg.MODEL.MASK_FORMER.MASK_WEIGHT = 20.0
    # Published spelling of MODEL.SEMASK.CATE_WEIGHT (read when that is not set), kept so
    # published YAMLs merge.
    cfg.MODEL.MASK_FORMER.CATE_WEIGHT = 0.4
    # Transformer decoder width, heads, dropout, FFN width, encoder/decoder depth, pre-norm.
    cfg.MODEL.MASK_FORMER.NHEADS = 8
    cfg.MODEL.MASK_FORMER.DROPOUT = 0.1
    cfg.MODEL.MASK_FORMER.DIM_FEEDFORWARD = 2048
    cfg.MODEL.MASK_FORMER.ENC_LAYERS = 0
    cfg.MODEL.MASK_FORMER.DEC_LAYERS = 6
    cfg.MODEL.MASK_FORMER.PRE_NORM = False
    cfg.MODEL.MASK_FORMER.HIDDEN_DIM = 256
    # Number of mask queries.
    cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES = 100
    # Feature the transformer decoder reads: "res5", "transformer_encoder",
    # "pixel_embedding" or "multi_scale_pixel_decoder".
    cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE = "res5"
    # Project the decoder input even when its width already equals HIDDEN_DIM.
    cfg.MODEL.MASK_FORMER.ENFORCE_INPUT_PROJ = False
    # Inference outputs and their thresholds.
    cfg.MODEL.MASK_FORMER.TEST = CN()
    cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = True
    cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = False
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = False
    cfg.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD = 0.0
    cfg.MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD = 0.0
    cfg.MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE = False
    # Published spelling of MODEL.SEMASK.RETURN_PRIOR (read when that is not set), kept so
    # published YAMLs merge.
    cfg.MODEL.MASK_FORMER.TEST.RETURN_PRIOR = False
    # Padding multiple of the batched input (the backbone's own divisibility if larger).
    cfg.MODEL.MASK_FORMER.SIZE_DIVISIBILITY = 32
    # Registry name of the transformer decoder.
    cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME = "MultiScaleMaskedTransformerDecoder"
    # Point-sampled mask losses: points per mask, oversampling and importance ratios.
    cfg.MODEL.MASK_FORMER.TRAIN_NUM_POINTS = 112 * 112
    cfg.MODEL.MASK_FORMER.OVERSAMPLE_RATIO = 3.0
    cfg.MODEL.MASK_FORMER.IMPORTANCE_SAMPLE_RATIO = 0.75
    # Mask loss and matching cost: "sigmoid_ce" (Mask2Former, on sampled points) or "focal"
    # (MaskFormer, on the full mask grid).
    cfg.MODEL.MASK_FORMER.MASK_LOSS = "sigmoid_ce"


def _add_sem_seg_head_config(cfg: CN) -> None:
    # Channels of the per-pixel mask embeddings.
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 256
    # Deformable (or vanilla) transformer encoder layers in the pixel decoder.
    cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS = 0
    # Registry name of the pixel decoder.
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = "BasePixelDecoder"
    # Backbone features read by the deformable encoder, and its sampling points.
    cfg.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS = 4
    # Read by nothing; kept so published configs merge. The deformable encoder, as in the
    # official code, takes its heads from MODEL.MASK_FORMER.NHEADS.
    cfg.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = 8
    # Under autocast (SOLVER.AMP, or bf16/fp16 inference) the MSDeformAttn pixel decoders run in
    # float32, as the official ones do (False), or let their convolutions and linear layers run in
    # the autocast dtype, the deformable sampling staying float32 (True; faster, not the
    # official numerics).
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_AUTOCAST = False
    # SeMask-FPN head: dropout before the 1x1 classifier (MODEL.SEMASK.CATE_WEIGHT weighs its
    # prior loss).
    cfg.MODEL.SEM_SEG_HEAD.DROPOUT = 0.1


def _add_checkpoint_config(cfg: CN) -> None:
    # Unpickle .pth/.pkl weights fully. Only for files you trust: it runs any code the file carries.
    cfg.MODEL.ALLOW_UNSAFE_PICKLE = False
    # Evaluate/predict with weights that leave model parameters unloaded or mis-shaped (a WARNING
    # with the count instead of an error): results then come from a partly random model.
    cfg.TEST.ALLOW_PARTIAL_WEIGHTS = False


def _add_slide_config(cfg: CN) -> None:
    cfg.TEST.SLIDE = CN()
    # Sliding-window inference (mmseg's "slide" test mode): the test-resized image is covered by
    # overlapping windows whose scores are averaged; semantic output only (no priors, panoptic or
    # instances). False: the whole image at once.
    cfg.TEST.SLIDE.ENABLED = False
    # Window size (height, width); a side shorter than it is one window of that side.
    cfg.TEST.SLIDE.CROP_SIZE = (512, 512)
    # Distance (height, width) between window corners; at most CROP_SIZE, so windows cover all.
    cfg.TEST.SLIDE.STRIDE = (341, 341)
    # Windows per forward pass (results do not depend on it; memory grows with it).
    cfg.TEST.SLIDE.BATCH_SIZE = 1


def _add_report_config(cfg: CN) -> None:
    cfg.TEST.REPORT = CN()
    # After a semantic evaluation, write the report (per-class CSV/JSON, confusion matrix, IoU
    # bars, lowest-mIoU images) into <evaluation output folder>/report (semask.report).
    cfg.TEST.REPORT.ENABLED = True
    # Images of lowest mIoU drawn as image | ground truth | prediction (0: none).
    cfg.TEST.REPORT.NUM_WORST_IMAGES = 8
