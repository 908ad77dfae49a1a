"""``timm:NAME`` (also ``timm:NAME.TAG`` and ``timm:hf-hub:ORG/NAME``): a timm model, pretrained.

Written against timm's public API (0.9 and later): ``timm.create_model(NAME,
pretrained=True)`` builds the network and loads its weights (fetched once into the
Hugging Face cache); ``timm.data.resolve_model_data_config(model)`` resolves what
the weights were trained with from the model's ``pretrained_cfg``:

* ``input_size`` ``(3, H, W)``: the input size is H (timm classifiers are square);
* ``mean`` and ``std``: the normalization (ImageNet's for most, 0.5 for many ViTs);
* ``crop_pct``: the evaluation crop fraction (0.875, 0.9, 0.95, 1.0 ...).

Class names: ImageNet-1k's (offline) for a 1000-class head; for the larger
ImageNet subsets timm knows (12k, 21k, 22k) its own ``ImageNetInfo`` descriptions;
otherwise none (give a class index). A ViT with a position embedding and no
``dynamic_img_size`` only runs at its input size and is marked fixed-size.

timm imports torchvision, so it needs the torchvision build made for the
installed torch (``make torchvision``).
"""

from __future__ import annotations

from ..errors import NeuronscopeError, closest
from .adapter import Model, ModelInfo, Normalize
from .from_torchvision import has_position_embedding, torchvision_import_problem

TIMM_INSTALL = "pip install 'neuronscope[timm]' (and `make torchvision` for the torchvision build matching torch)"


def import_timm():
    """``timm`` with ``timm.data``, or a NeuronscopeError saying why it cannot be used."""
    try:
        import timm
        import timm.data  # noqa: F401
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] == "timm":
            raise NeuronscopeError(f"timm is not installed; {TIMM_INSTALL}") from e
        raise NeuronscopeError(_dependency_problem(e)) from e
    except Exception as e:  # noqa: BLE001 - most often torchvision built for another torch
        raise NeuronscopeError(_dependency_problem(e)) from e
    return timm


def _dependency_problem(e: BaseException) -> str:
    if "torchvision" in f"{getattr(e, 'name', '')} {e}":
        return f"timm imports torchvision, which cannot be used: {torchvision_import_problem(e)}"
    return f"timm is installed but fails to import ({type(e).__name__}: {e}); {TIMM_INSTALL}"


def _labels(timm, net, num_classes: int | None) -> list[str] | None:
    from .registry import imagenet_labels

    if num_classes == 1000:
        return imagenet_labels()
    info_cls = getattr(timm.data, "ImageNetInfo", None)
    infer = getattr(timm.data, "infer_imagenet_subset", None)
    if info_cls is None or infer is None:
        return None
    subset = infer(net)
    return list(info_cls(subset).label_descriptions()) if subset else None


def load_timm(spec: str) -> Model:
    """The model of ``spec`` (see the module doc)."""
    timm = import_timm()
    name = spec.strip()
    try:
        net = timm.create_model(name, pretrained=True)
    except RuntimeError as e:
        msg = str(e)
        if msg.startswith("Unknown model"):
            arch = name.split(".")[0]
            hits = closest(arch, timm.list_models())
            raise NeuronscopeError(
                f"timm has no model {arch!r}" + (f"; did you mean {', '.join(hits)}?" if hits else "")
                + " (timm.list_models('*PATTERN*', pretrained=True) lists those with weights)"
            ) from e
        raise NeuronscopeError(f"timm could not build {name!r}: {msg}") from e
    except OSError as e:  # the Hugging Face hub's download and cache errors are OSErrors
        raise NeuronscopeError(
            f"timm could not load the pretrained weights of {name!r} ({type(e).__name__}: {e}); timm downloads them "
            "once into the Hugging Face cache ($HF_HOME, default ~/.cache/huggingface): download there on a "
            "connected machine (HF_HUB_OFFLINE=1 then reads only the cache)"
        ) from e
    cfg = timm.data.resolve_model_data_config(net)
    _, h, w = cfg["input_size"]
    if h != w:
        raise NeuronscopeError(f"timm model {name!r} takes {h}x{w} inputs; neuronscope's renders are square")
    pretrained_cfg = dict(getattr(net, "pretrained_cfg", None) or {})
    num_classes = getattr(net, "num_classes", None) or pretrained_cfg.get("num_classes")
    info = ModelInfo(
        name=f"timm:{name}",
        input_size=int(h),
        labels=_labels(timm, net, num_classes),
        eval_resize=min(1.0, float(cfg.get("crop_pct") or 0.875)),
        source="timm",
        fixed_size=has_position_embedding(net) and not getattr(net, "dynamic_img_size", False),
    )
    info.extra.update(interpolation=cfg.get("interpolation"), crop_mode=cfg.get("crop_mode"),
                      pretrained=pretrained_cfg.get("tag") or pretrained_cfg.get("hf_hub_id"))
    return Model(net, Normalize(cfg["mean"], cfg["std"]), info)
