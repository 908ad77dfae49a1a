"""Stand-ins for torchvision and timm, so the loaders' code paths run where neither is importable.

They mirror, with the real signatures, the parts of the real APIs that
``neuronscope.models.from_torchvision`` and ``from_timm`` call:

* torchvision (0.14 and later): ``torchvision.models.get_model(name, **config)``,
  ``get_model_weights(name)`` (read from the builder's ``weights`` annotation),
  ``list_models(module=None, include=None, exclude=None)``; weights enums whose
  members carry ``url``, ``transforms`` (a partial of the ``ImageClassification``
  preset, keyword-only ``crop_size``, ``resize_size``, ``mean``, ``std``,
  ``interpolation``, stored as lists) and ``meta["categories"]``, with a
  ``DEFAULT`` alias and ``repr`` ``Enum_Name.MEMBER``; builders take
  ``weights=None, progress=True`` and load the weights' state dict.
* timm (0.9 and later): ``timm.create_model(model_name, pretrained=False, ...)``
  with ``NAME.TAG`` names and the real errors (``Unknown model (NAME)``, ``Invalid
  pretrained tag``, ``No pretrained weights exist``), ``timm.list_models``, models
  carrying ``pretrained_cfg`` and ``num_classes``, ``timm.data.resolve_data_config``
  / ``resolve_model_data_config`` (input size, interpolation, mean, std, crop_pct,
  crop_mode from the pretrained config, ``test_input_size`` only with
  ``use_test_size``), ``ImageNetInfo`` and ``infer_imagenet_subset``.

"Downloads" come from :data:`HUB`, a dict of state dicts by URL; a missing URL
fails as an offline machine does (``URLError`` for torchvision, a
``FileNotFoundError`` like the Hugging Face hub's ``LocalEntryNotFoundError`` for
timm). The networks are the tiny ones of ``tests/nets.py``, and :class:`TorchvisionViT`,
a ViT with torchvision's module names and ``nn.MultiheadAttention``.
"""

import dataclasses
import enum
import fnmatch
import functools
import inspect
import sys
import types
import typing
import urllib.error
from typing import Any, Callable, Optional

import torch
from torch import nn

from tests import nets

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CATEGORIES = [f"stand-in class {i}" for i in range(10)]
HUB: dict[str, dict] = {}  # url -> state dict: the weights "on the internet"


class TorchvisionViT(nn.Module):
    """torchvision's ViT layout and names at 32 px: ``conv_proj``, ``class_token``, ``encoder.pos_embedding``,
    ``encoder.layers.encoder_layer_N`` (``ln_1``, ``self_attention`` = nn.MultiheadAttention, ``ln_2``,
    ``mlp``), ``encoder.ln``, and ``heads.head`` reading the class token ``x[:, 0]``."""

    class Layer(nn.Module):
        def __init__(self, dim: int):
            super().__init__()
            self.ln_1 = nn.LayerNorm(dim)
            self.self_attention = nn.MultiheadAttention(dim, 4, batch_first=True)
            self.ln_2 = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(2 * dim, dim))

        def forward(self, x):
            y = self.ln_1(x)
            x = x + self.self_attention(y, y, y, need_weights=False)[0]
            return x + self.mlp(self.ln_2(x))

    class Encoder(nn.Module):
        def __init__(self, dim: int, n: int, depth: int):
            super().__init__()
            self.pos_embedding = nn.Parameter(torch.randn(1, n, dim) * 0.02)
            self.layers = nn.Sequential(*[TorchvisionViT.Layer(dim) for _ in range(depth)])
            for i in range(depth):  # torchvision's names
                self.layers._modules[f"encoder_layer_{i}"] = self.layers._modules.pop(str(i))
            self.ln = nn.LayerNorm(dim)

        def forward(self, x):
            return self.ln(self.layers(x + self.pos_embedding))

    def __init__(self, classes: int = 10, dim: int = 32, patch: int = 4, size: int = 32, depth: int = 2):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, dim, patch, patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder = TorchvisionViT.Encoder(dim, (size // patch) ** 2 + 1, depth)
        self.heads = nn.Sequential()
        self.heads.add_module("head", nn.Linear(dim, classes))

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


def _publish(url: str, make: Callable[[], nn.Module], seed: int) -> str:
    torch.manual_seed(seed)
    net = make()
    with torch.no_grad():
        for m in net.modules():  # trained-looking BatchNorm statistics
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    HUB[url] = {k: v.clone() for k, v in net.state_dict().items()}
    return url


def _download(url: str) -> dict:
    if url not in HUB:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    return HUB[url]


# ---------------------------------------------------------------- torchvision

class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


class ImageClassification(nn.Module):
    def __init__(self, *, crop_size: int, resize_size: int = 256, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 interpolation: InterpolationMode = InterpolationMode.BILINEAR, antialias: Optional[bool] = True):
        super().__init__()
        self.crop_size = [crop_size]
        self.resize_size = [resize_size]
        self.mean = list(mean)
        self.std = list(std)
        self.interpolation = interpolation
        self.antialias = antialias


class ObjectDetection(nn.Module):
    def forward(self, img):
        return img


@dataclasses.dataclass
class Weights:
    url: str
    transforms: Callable
    meta: dict


class WeightsEnum(enum.Enum):
    @classmethod
    def verify(cls, obj):
        if obj is not None and not isinstance(obj, cls):
            if isinstance(obj, str):
                return cls[obj.replace(cls.__name__ + ".", "")]
            raise TypeError(f"Invalid Weight class provided; expected {cls.__name__} but received {type(obj).__name__}.")
        return obj

    def get_state_dict(self, progress: bool = True) -> dict:
        return _download(self.url)

    def __repr__(self):
        return f"{type(self).__name__}.{self._name_}"

    @property
    def url(self):
        return self.value.url

    @property
    def transforms(self):
        return self.value.transforms

    @property
    def meta(self):
        return self.value.meta


def _preset(**kw):
    return functools.partial(ImageClassification, **kw)


class ResNetStandIn_Weights(WeightsEnum):
    IMAGENET1K_V1 = Weights(_publish("https://stand.in/resnet_v1.pth", nets.TinyResNet, 10),
                            _preset(crop_size=32, resize_size=36), {"categories": CATEGORIES})
    IMAGENET1K_V2 = Weights(_publish("https://stand.in/resnet_v2.pth", nets.TinyResNet, 11),
                            _preset(crop_size=32, resize_size=34), {"categories": CATEGORIES})
    DEFAULT = IMAGENET1K_V2


class ViTStandIn_Weights(WeightsEnum):
    IMAGENET1K_V1 = Weights(_publish("https://stand.in/vit_v1.pth", nets.TinyViT, 12),
                            _preset(crop_size=32, resize_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                                    interpolation=InterpolationMode.BICUBIC),
                            {"categories": CATEGORIES, "min_size": (32, 32)})
    DEFAULT = IMAGENET1K_V1


class ViTB16StandIn_Weights(WeightsEnum):
    IMAGENET1K_V1 = Weights(_publish("https://stand.in/vit_b_16.pth", TorchvisionViT, 15),
                            _preset(crop_size=32, resize_size=36), {"categories": CATEGORIES, "min_size": (32, 32)})
    DEFAULT = IMAGENET1K_V1


class ConvNeXtStandIn_Weights(WeightsEnum):
    IMAGENET1K_V1 = Weights(_publish("https://stand.in/convnext_v1.pth", nets.TinyConvNeXt, 13),
                            _preset(crop_size=32, resize_size=36, interpolation=InterpolationMode.BILINEAR),
                            {"categories": CATEGORIES})
    DEFAULT = IMAGENET1K_V1


class DetectorStandIn_Weights(WeightsEnum):
    COCO_V1 = Weights(_publish("https://stand.in/detector.pth", nets.DictNet, 14), ObjectDetection,
                      {"categories": ["__background__", "person"]})
    DEFAULT = COCO_V1


class OfflineStandIn_Weights(WeightsEnum):
    IMAGENET1K_V1 = Weights("https://stand.in/never_published.pth", _preset(crop_size=32, resize_size=36),
                            {"categories": CATEGORIES})
    DEFAULT = IMAGENET1K_V1


BUILTIN_MODELS: dict[str, Callable] = {}


def _register(name: str, module: str, make: Callable[[], nn.Module], weights_enum):
    def build(*, weights: Optional[weights_enum] = None, progress: bool = True, **kwargs: Any) -> nn.Module:
        weights = weights_enum.verify(weights)
        net = make()
        if weights is not None:
            net.load_state_dict(weights.get_state_dict(progress=progress))
        return net

    build.__name__ = name
    build.__module__ = module
    BUILTIN_MODELS[name] = build


_register("resnet_stand_in", "torchvision.models.resnet", nets.TinyResNet, ResNetStandIn_Weights)
_register("vit_stand_in", "torchvision.models.vision_transformer", nets.TinyViT, ViTStandIn_Weights)
_register("vit_b_16_stand_in", "torchvision.models.vision_transformer", TorchvisionViT, ViTB16StandIn_Weights)
_register("convnext_stand_in", "torchvision.models.convnext", nets.TinyConvNeXt, ConvNeXtStandIn_Weights)
_register("detector_stand_in", "torchvision.models.detection.faster_rcnn", nets.DictNet, DetectorStandIn_Weights)
_register("offline_stand_in", "torchvision.models.resnet", nets.TinyResNet, OfflineStandIn_Weights)


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    try:
        return BUILTIN_MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"Unknown model {name.lower()}") from None


def get_model(name: str, **config: Any) -> nn.Module:
    return get_model_builder(name)(**config)


def get_model_weights(name):
    fn = get_model_builder(name) if isinstance(name, str) else name
    sig = inspect.signature(fn)
    if "weights" not in sig.parameters:
        raise ValueError("The method is missing the 'weights' argument.")
    ann = sig.parameters["weights"].annotation
    for t in (ann, *typing.get_args(ann)):
        if isinstance(t, type) and issubclass(t, WeightsEnum):
            return t
    raise ValueError("The WeightsEnum class for the specific method couldn't be retrieved.")


def list_models(module=None, include=None, exclude=None) -> list[str]:
    names = {k for k, v in BUILTIN_MODELS.items() if module is None or v.__module__.rsplit(".", 1)[0] == module.__name__}
    if include:
        names = {n for pat in ([include] if isinstance(include, str) else include) for n in fnmatch.filter(names, pat)}
    for pat in ([exclude] if isinstance(exclude, str) else exclude or []):
        names -= set(fnmatch.filter(names, pat))
    return sorted(names)


def torchvision_modules() -> dict[str, types.ModuleType]:
    tv = types.ModuleType("torchvision")
    tv.__version__ = "0.28.0+cpu"
    models = types.ModuleType("torchvision.models")
    for f in (get_model, get_model_weights, get_model_builder, list_models):
        setattr(models, f.__name__, f)
    models.WeightsEnum, models.Weights = WeightsEnum, Weights
    for cls in (ResNetStandIn_Weights, ViTStandIn_Weights, ViTB16StandIn_Weights, ConvNeXtStandIn_Weights):
        setattr(models, cls.__name__, cls)
    for name, fn in BUILTIN_MODELS.items():
        setattr(models, name, fn)
    transforms = types.ModuleType("torchvision.transforms")
    transforms.InterpolationMode = InterpolationMode
    tv.models, tv.transforms = models, transforms
    return {"torchvision": tv, "torchvision.models": models, "torchvision.transforms": transforms}


# ---------------------------------------------------------------- timm

DEFAULT_CROP_PCT = 0.875


def _cfg(url: str, **kw) -> dict:
    cfg = {"url": url, "num_classes": 1000, "input_size": (3, 32, 32), "pool_size": None, "crop_pct": DEFAULT_CROP_PCT,
           "interpolation": "bicubic", "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "crop_mode": "center"}
    cfg.update(kw)
    return cfg


class DynamicViT(nets.TinyViT):
    """A ViT that interpolates its position embedding (timm's ``dynamic_img_size=True``)."""

    dynamic_img_size = True


# architecture -> (constructor(num_classes), {tag: pretrained cfg}); the first tag is the default
TIMM_MODELS: dict[str, tuple[Callable, dict]] = {
    "vit_stand_in": (lambda n: nets.TinyViT(classes=n), {
        "augreg_in1k": _cfg(_publish("https://stand.in/timm_vit_in1k", lambda: nets.TinyViT(classes=1000), 20),
                            mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.9),
        "augreg_in12k": _cfg(_publish("https://stand.in/timm_vit_in12k", lambda: nets.TinyViT(classes=11821), 21),
                             num_classes=11821, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.9),
    }),
    "resnet_stand_in": (lambda n: nets.TinyResNet(classes=n), {
        "a1_in1k": _cfg(_publish("https://stand.in/timm_resnet_a1", lambda: nets.TinyResNet(classes=1000), 22),
                        crop_pct=0.95, test_input_size=(3, 40, 40), test_crop_pct=1.0),
    }),
    "vit_dynamic_stand_in": (lambda n: DynamicViT(classes=n), {
        "in1k": _cfg(_publish("https://stand.in/timm_vit_dyn", lambda: DynamicViT(classes=1000), 23)),
    }),
    "offline_stand_in": (lambda n: nets.TinyConvNeXt(classes=n), {
        "in1k": _cfg("https://stand.in/timm_never_published"),
    }),
    "untrained_stand_in": (lambda n: nets.TinyConvNeXt(classes=n), {}),
}


def _split_name_tag(model_name: str) -> tuple[str, str]:
    arch, _, tag = model_name.partition(".")
    return arch, tag


def create_model(model_name: str, pretrained: bool = False, pretrained_cfg=None, pretrained_cfg_overlay=None,
                 checkpoint_path: str = "", cache_dir=None, scriptable=None, exportable=None, no_jit=None, **kwargs):
    arch, tag = _split_name_tag(model_name)
    if arch not in TIMM_MODELS:
        raise RuntimeError("Unknown model (%s)" % arch)
    make, cfgs = TIMM_MODELS[arch]
    if tag and tag not in cfgs:
        raise RuntimeError(f"Invalid pretrained tag ({tag}) for {arch}.")
    tag = tag or next(iter(cfgs), "")
    cfg = dict(cfgs.get(tag, {}), tag=tag, architecture=arch)
    net = make(kwargs.get("num_classes", cfg.get("num_classes", 1000)))
    if pretrained:
        if not cfgs:
            raise RuntimeError(f"No pretrained weights exist for {arch}. Use `pretrained=False` for random init.")
        if cfg["url"] not in HUB:
            raise FileNotFoundError(f"Cannot find an appropriate cached snapshot folder for the specified revision "
                                    f"on the local disk and outgoing traffic has been disabled ({cfg['url']})")
        net.load_state_dict(HUB[cfg["url"]])
    net.pretrained_cfg = cfg
    net.default_cfg = cfg
    net.num_classes = cfg.get("num_classes", 1000)
    return net


def timm_list_models(filter="", module="", pretrained=False, exclude_filters="", name_matches_cfg=False,
                     include_tags=None) -> list[str]:
    names = [a for a, (_, cfgs) in TIMM_MODELS.items() if cfgs or not pretrained]
    if filter:
        names = fnmatch.filter(names, filter)
    return sorted(names)


def resolve_data_config(args=None, pretrained_cfg=None, model=None, use_test_size=False, verbose=False) -> dict:
    assert model or args or pretrained_cfg, "At least one of model, args, or pretrained_cfg required for data config."
    args = args or {}
    cfg = pretrained_cfg or (getattr(model, "pretrained_cfg", None) if model is not None else None) or {}
    size = args.get("input_size") or (use_test_size and cfg.get("test_input_size")) or cfg.get("input_size") or (3, 224, 224)
    crop = args.get("crop_pct") or (use_test_size and cfg.get("test_crop_pct")) or cfg.get("crop_pct") or DEFAULT_CROP_PCT
    return {
        "input_size": tuple(size),
        "interpolation": args.get("interpolation") or cfg.get("interpolation") or "bicubic",
        "mean": tuple(args.get("mean") or cfg.get("mean") or IMAGENET_MEAN),
        "std": tuple(args.get("std") or cfg.get("std") or IMAGENET_STD),
        "crop_pct": crop,
        "crop_mode": args.get("crop_mode") or cfg.get("crop_mode") or "center",
    }


def resolve_model_data_config(model, args=None, pretrained_cfg=None, use_test_size=False, verbose=False) -> dict:
    return resolve_data_config(args=args, pretrained_cfg=pretrained_cfg, model=model, use_test_size=use_test_size,
                               verbose=verbose)


_NUM_CLASSES_TO_SUBSET = {1000: "imagenet-1k", 11821: "imagenet-12k", 21841: "imagenet-22k"}


def infer_imagenet_subset(model_or_cfg) -> Optional[str]:
    if isinstance(model_or_cfg, dict):
        n = model_or_cfg.get("num_classes")
    else:
        n = getattr(model_or_cfg, "num_classes", None) or getattr(model_or_cfg, "pretrained_cfg", {}).get("num_classes")
    return _NUM_CLASSES_TO_SUBSET.get(n)


class ImageNetInfo:
    def __init__(self, subset: str = "imagenet-1k"):
        n = {v: k for k, v in _NUM_CLASSES_TO_SUBSET.items()}[subset]
        self._descriptions = [f"{subset} lemma {i}" for i in range(n)]

    def num_classes(self) -> int:
        return len(self._descriptions)

    def label_descriptions(self, detailed: bool = False, as_dict: bool = False):
        return list(self._descriptions)


def timm_modules() -> dict[str, types.ModuleType]:
    timm = types.ModuleType("timm")
    timm.__version__ = "1.0.31"
    timm.create_model = create_model
    timm.list_models = timm_list_models
    data = types.ModuleType("timm.data")
    for f in (resolve_data_config, resolve_model_data_config, infer_imagenet_subset):
        setattr(data, f.__name__, f)
    data.ImageNetInfo = ImageNetInfo
    timm.data = data
    return {"timm": timm, "timm.data": data}


def install(monkeypatch, *, torchvision: bool = True, timm: bool = True) -> None:
    """Put the stand-ins into ``sys.modules`` for one test (``monkeypatch`` restores them)."""
    mods = {**(torchvision_modules() if torchvision else {}), **(timm_modules() if timm else {})}
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
