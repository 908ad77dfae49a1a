"""``torchvision:NAME`` and ``torchvision:NAME.WEIGHTS``: a torchvision image classifier, pretrained.

Written against torchvision's model API (0.14 and later): ``get_model_weights(NAME)``
gives the weights enum of a registered builder, ``DEFAULT`` (or the member named
``WEIGHTS``, e.g. ``resnet50.IMAGENET1K_V1``) picks the weights, and
``get_model(NAME, weights=...)`` builds the network and loads them. torchvision
downloads the file into its cache (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch``) the first time. What neuronscope needs to feed the network
comes from the weights, not from assumptions:

* ``weights.transforms()`` is an ``ImageClassification`` preset with
  ``crop_size``, ``resize_size``, ``mean`` and ``std``: the input size is the crop,
  the evaluation crop fraction is crop / resize (0.875 for 224 of 256, 0.966 for
  the V2 recipes' 224 of 232, 1 for the 384-px SWAG ViTs), and the normalization
  is the preset's own mean and std;
* ``weights.meta["categories"]`` are the class names.

Networks whose weights preset is not ``ImageClassification`` (detection,
segmentation, video, optical flow) are refused: neuronscope's verbs read image
classifiers. A network with position embeddings (the ViTs) only runs at its input
size and is marked fixed-size.
"""

from __future__ import annotations

from ..errors import NeuronscopeError, closest
from .adapter import Model, ModelInfo, Normalize



def matching_torchvision(torch_version: str) -> str:
    """The torchvision requirement released with a torch 2.x (0.15 came with 2.0, one minor per minor)."""
    parts = torch_version.split("+")[0].split(".")
    if parts[0] == "2" and len(parts) > 1 and parts[1].isdigit():
        return f"torchvision==0.{int(parts[1]) + 15}.*"
    return "torchvision"


def torchvision_install() -> str:
    import torch

    return ("install the torchvision build made for your torch, from the same wheel index as torch: `make torchvision`, "
            f"or `pip install --no-deps '{matching_torchvision(torch.__version__)}' --index-url "
            "https://download.pytorch.org/whl/cpu` for a CPU torch")


def torchvision_import_problem(e: BaseException) -> str:
    """Why torchvision could not be imported, and what to do: missing, or a build for another torch."""
    import torch

    if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == "torchvision":
        return f"torchvision is not installed; {torchvision_install()}"
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return (f"torchvision is installed but fails to import beside torch {torch.__version__} "
            f"({type(e).__name__}: {first}); {torchvision_install()}")


def import_torchvision_models():
    """``torchvision.models``, or a NeuronscopeError saying why it cannot be used."""
    try:
        import torchvision.models as tvm
    except Exception as e:  # noqa: BLE001 - a torchvision built for another torch fails at import in many ways
        raise NeuronscopeError(torchvision_import_problem(e)) from e
    return tvm


def _classifier_names(tvm) -> list[str]:
    try:
        return list(tvm.list_models(module=tvm))  # the classification builders only
    except Exception:  # noqa: BLE001 - list_models(module=) exists from 0.14 on; suggestions are a courtesy
        return []


def load_torchvision(spec: str) -> Model:
    """The model of ``spec`` = ``NAME`` or ``NAME.WEIGHTS`` (see the module doc)."""
    tvm = import_torchvision_models()
    name, _, tag = spec.strip().partition(".")
    try:
        enum = tvm.get_model_weights(name)
    except ValueError as e:
        hits = closest(name.lower(), _classifier_names(tvm))
        raise NeuronscopeError(
            f"torchvision has no model {name!r}" + (f"; did you mean {', '.join(hits)}?" if hits else "")
            + " (torchvision.models.list_models(module=torchvision.models) lists its image classifiers)"
        ) from e
    members = [w.name for w in enum]
    if tag:
        try:
            weights = enum[tag]
        except KeyError:
            raise NeuronscopeError(
                f"torchvision model {name!r} has no weights {tag!r}; valid: {', '.join(members + ['DEFAULT'])}"
            ) from None
    else:
        weights = enum.DEFAULT
    preset = weights.transforms()
    if type(preset).__name__ != "ImageClassification" or not hasattr(preset, "crop_size"):
        raise NeuronscopeError(
            f"torchvision model {name!r} is not an image classifier (its weights {weights!r} preprocess with "
            f"{type(preset).__name__}); neuronscope reads image classifiers such as resnet50, vit_b_16, convnext_tiny"
        )
    try:
        net = tvm.get_model(name, weights=weights)
    except (OSError, RuntimeError) as e:  # urllib's URLError is an OSError; a bad or partial file a RuntimeError
        raise NeuronscopeError(
            f"torchvision could not load the weights {weights!r} of {name!r} from {getattr(weights, 'url', '?')} "
            f"({type(e).__name__}: {e}); torchvision downloads them once into $TORCH_HOME/hub/checkpoints "
            "(default ~/.cache/torch): download there on a connected machine, or delete a partial file"
        ) from e
    crop, resize = int(preset.crop_size[0]), int(preset.resize_size[0])
    info = ModelInfo(
        name=f"torchvision:{name}" + (f".{tag}" if tag else ""),
        input_size=crop,
        labels=[str(c) for c in weights.meta["categories"]] if weights.meta.get("categories") else None,
        eval_resize=min(1.0, crop / resize),
        source="torchvision",
        fixed_size=has_position_embedding(net),
    )
    info.extra.update(weights=repr(weights), interpolation=str(getattr(preset, "interpolation", "")))
    return Model(net, Normalize(preset.mean, preset.std), info)


def has_position_embedding(net) -> bool:
    """ViT-style networks (torchvision's ``pos_embedding``, timm's ``pos_embed``) run at one input size."""
    return any("pos_embed" in n for n, _ in net.named_parameters())
