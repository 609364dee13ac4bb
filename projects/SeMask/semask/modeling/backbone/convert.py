"""Pure remapping of foreign backbone checkpoints to this project's parameter names.

Every ``convert_*`` function takes a state_dict (or a checkpoint dict wrapping one under
``"model"``/``"state_dict"``) of tensors or numpy arrays and returns a new ``{name: Tensor}`` in
backbone naming (no ``backbone.`` prefix). :func:`load_backbone_state_dict` loads such a dict and
reports missing/unexpected keys and shape mismatches by name.
"""

import re
from typing import Dict, Iterable, List, Mapping, Tuple

import numpy as np
import torch
from torch import nn

from .swin_blocks import relative_position_index

StateDict = Dict[str, torch.Tensor]

_SWIN_DROPPED = re.compile(r"^head\.|attn_mask$|relative_position_index$")
_SWIN_BIAS_TABLE = re.compile(r"^(.*\.attn\.)relative_position_bias_table$")


def unwrap_checkpoint(checkpoint: Mapping) -> StateDict:
    """The state_dict inside ``checkpoint`` (``"model"``/``"state_dict"`` wrappers), as tensors."""
    for wrapper in ("model", "state_dict"):
        if wrapper in checkpoint and isinstance(checkpoint[wrapper], Mapping):
            checkpoint = checkpoint[wrapper]
    state = {}
    for name, value in checkpoint.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"checkpoint entry {name!r} is {type(value).__name__}, not a tensor")
        state[name] = value
    return state


def strip_prefix(state: StateDict, prefix: str) -> StateDict:
    """Entries whose name starts with ``prefix``, renamed without it (others are dropped)."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def add_prefix(state: StateDict, prefix: str) -> StateDict:
    """Every entry renamed ``prefix + name``."""
    return {prefix + k: v for k, v in state.items()}


def convert_semask_official(checkpoint: Mapping, prefix: str = "backbone.") -> StateDict:
    """Official SeMask checkpoint (Detectron2 ``.pth``/``.pkl`` or mmseg) -> our backbone names.

    The official names are ours, so this only unwraps and strips ``prefix`` (a checkpoint holding
    only backbone entries, with no prefix, is returned as is).
    """
    state = unwrap_checkpoint(checkpoint)
    if any(k.startswith(prefix) for k in state):
        return strip_prefix(state, prefix)
    return state


def _with_relative_position_index(state: StateDict) -> StateDict:
    """Add the (deterministic) ``relative_position_index`` beside every bias table."""
    out = dict(state)
    for name, table in state.items():
        match = _SWIN_BIAS_TABLE.match(name)
        if match:
            window = (int(round(table.shape[0] ** 0.5)) + 1) // 2
            out[match.group(1) + "relative_position_index"] = relative_position_index(window)
    return out


def _swin_common(state: StateDict) -> StateDict:
    """Drop classifier and derived buffers; the final ``norm`` is the last stage's ``norm3``."""
    out = {}
    for name, value in state.items():
        if _SWIN_DROPPED.search(name):
            continue
        out[re.sub(r"^norm\.", "norm3.", name)] = value
    return _with_relative_position_index(out)


def convert_swin_microsoft(checkpoint: Mapping) -> StateDict:
    """Microsoft Swin ImageNet checkpoint (``{"model": ...}``) -> our backbone names.

    Names match except the classifier (dropped), ``attn_mask`` buffers (recomputed at run time)
    and the final ``norm`` (-> ``norm3``). ``norm0..2`` and semantic layers stay missing.
    """
    return _swin_common(unwrap_checkpoint(checkpoint))


def convert_swin_timm(checkpoint: Mapping) -> StateDict:
    """timm Swin state_dict -> our backbone names.

    timm downsamples at the start of a stage (``layers.{i}.downsample``, i >= 1) where we do at
    the end of the previous one; its 2x2 merge order and other names equal ours. Checkpoints in
    Microsoft layout (``layers.0.downsample`` present) are converted as such.
    """
    state = unwrap_checkpoint(checkpoint)
    if "layers.0.downsample.reduction.weight" in state:
        return convert_swin_microsoft(state)
    moved = {
        re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", k): v
        for k, v in state.items()
    }
    return _swin_common(moved)


def _match(pattern: str, name: str, layout: str) -> re.Match:
    """``re.match(pattern, name)``, or a KeyError naming the entry that fits no known name."""
    match = re.match(pattern, name)
    if match is None:
        raise KeyError(f"MiT checkpoint entry {name!r} is not a {layout} MiT parameter name")
    return match


def _mit_from_mmseg(state: StateDict) -> StateDict:
    """mmseg >= 1.0 ``MixVisionTransformer`` names (``layers.{i}.{0,1,2}``) -> ours."""
    out = {}
    for name, value in state.items():
        stage, part, rest = _match(r"layers\.(\d+)\.([012])\.(.*)", name, "mmseg").groups()
        s = int(stage) + 1
        if part == "0":
            out[f"patch_embed{s}.{rest.replace('projection.', 'proj.')}"] = value
            continue
        if part == "2":
            out[f"norm{s}.{rest}"] = value
            continue
        block, rest = rest.split(".", 1)
        prefix = f"block{s}.{block}."
        if rest.startswith("attn.attn.in_proj_"):
            kind = rest.rsplit("_", 1)[1]
            dim = value.shape[0] // 3
            out[prefix + f"attn.q.{kind}"] = value[:dim]
            out[prefix + f"attn.kv.{kind}"] = value[dim:]
        elif rest.startswith("attn.attn.out_proj."):
            out[prefix + rest.replace("attn.attn.out_proj.", "attn.proj.")] = value
        elif rest.startswith("ffn.layers."):
            index, kind = rest[len("ffn.layers.") :].split(".")
            target = {"0": "mlp.fc1", "1": "mlp.dwconv.dwconv", "4": "mlp.fc2"}.get(index)
            if target is None:
                raise KeyError(f"MiT checkpoint entry {name!r} is not a mmseg MiT parameter name")
            out[prefix + f"{target}.{kind}"] = (
                value.flatten(1) if index != "1" and kind == "weight" else value
            )
        else:
            out[prefix + rest] = value
    return out


_HF_RENAMES = (
    (r"^encoder\.patch_embeddings\.(\d+)\.layer_norm\.", "patch_embed{}.norm."),
    (r"^encoder\.patch_embeddings\.(\d+)\.proj\.", "patch_embed{}.proj."),
    (r"^encoder\.layer_norm\.(\d+)\.", "norm{}."),
)
_HF_BLOCK_RENAMES = {
    "layer_norm_1.": "norm1.",
    "layer_norm_2.": "norm2.",
    "attention.self.query.": "attn.q.",
    "attention.self.sr.": "attn.sr.",
    "attention.self.layer_norm.": "attn.norm.",
    "attention.output.dense.": "attn.proj.",
    "mlp.dense1.": "mlp.fc1.",
    "mlp.dwconv.dwconv.": "mlp.dwconv.dwconv.",
    "mlp.dense2.": "mlp.fc2.",
}


def _mit_from_hf(state: StateDict) -> StateDict:
    """HuggingFace ``SegformerModel`` names (``encoder.*``) -> ours; key/value fused into kv."""
    out, keys, values = {}, {}, {}
    for name, value in state.items():
        for pattern, template in _HF_RENAMES:
            match = re.match(pattern, name)
            if match:
                out[template.format(int(match[1]) + 1) + name[match.end() :]] = value
                break
        else:
            pattern = r"encoder\.block\.(\d+)\.(\d+)\.(.*)"
            stage, block, rest = _match(pattern, name, "HuggingFace").groups()
            prefix = f"block{int(stage) + 1}.{block}."
            if rest.startswith("attention.self.key."):
                keys[prefix + "attn.kv." + rest.rsplit(".", 1)[1]] = value
            elif rest.startswith("attention.self.value."):
                values[prefix + "attn.kv." + rest.rsplit(".", 1)[1]] = value
            else:
                old = next((o for o in _HF_BLOCK_RENAMES if rest.startswith(o)), None)
                if old is None:
                    raise KeyError(f"MiT checkpoint entry {name!r} is not a HuggingFace MiT name")
                out[prefix + _HF_BLOCK_RENAMES[old] + rest[len(old) :]] = value
    if keys.keys() != values.keys():
        raise KeyError(f"HF checkpoint has unpaired key/value projections: {sorted(keys ^ values)}")
    out.update({name: torch.cat([keys[name], values[name]]) for name in keys})
    return out


def convert_mit(checkpoint: Mapping) -> StateDict:
    """MiT checkpoint in SegFormer (NVlabs), mmseg >= 1.0 or HuggingFace naming -> ours.

    Decode heads/classifiers are dropped; ``backbone.``/``segformer.`` prefixes are stripped.
    """
    state = unwrap_checkpoint(checkpoint)
    for prefix in ("backbone.", "segformer."):
        if any(k.startswith(prefix) for k in state):
            state = strip_prefix(state, prefix)
    state = {k: v for k, v in state.items() if not re.match(r"(head|decode_head|classifier)\.", k)}
    if any(k.startswith("encoder.") for k in state):
        return _mit_from_hf(state)
    if any(re.match(r"layers\.\d+\.\d+\.", k) for k in state):
        return _mit_from_mmseg(state)
    return state


def load_backbone_state_dict(
    model: nn.Module, state: StateDict, allowed_missing: Iterable[str] = ()
) -> Tuple[List[str], List[str]]:
    """Load ``state`` into ``model``; return (missing, unexpected) names.

    Raises ValueError naming every parameter whose shape differs (with both shapes), and every
    missing key that does not contain one of ``allowed_missing`` (e.g. ``"semantic_layer"``,
    ``"norm"`` when starting from ImageNet weights).
    """
    own = model.state_dict()
    mismatched = [
        f"{k}: checkpoint {list(v.shape)} vs model {list(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if mismatched:
        raise ValueError("checkpoint shapes do not match the model:\n  " + "\n  ".join(mismatched))
    allowed = tuple(allowed_missing)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    forbidden = [k for k in missing if not any(a in k for a in allowed)]
    if forbidden or unexpected:
        raise ValueError(
            f"checkpoint does not fit the model: missing {forbidden}, unexpected {unexpected}"
        )
    model.load_state_dict(state, strict=False)
    return missing, unexpected
