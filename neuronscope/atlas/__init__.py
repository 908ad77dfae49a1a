"""The atlas: every unit of chosen layers rendered, resumably, into a static "microscope" website.

    from neuronscope.atlas import build_atlas, AtlasSettings
    summary = build_atlas("efficientnet_lite0", ["blocks.4", "blocks.6"], "atlas-lite0",
                          settings=AtlasSettings(size=64, steps=128, batch=32))
    print(summary.text())      # open atlas-lite0/index.html

Modules: :mod:`.settings` (render settings, manifest), :mod:`.plan` (layers,
units, batches), :mod:`.worker` (one batch = one optimization), :mod:`.store`
(SQLite WAL + PNG files, exactly-once recording), :mod:`.backends` (local, Ray),
:mod:`.classes` (classes each unit drives), :mod:`.sources` (top-k store and
dissection adapters), :mod:`.site` (static HTML), :mod:`.run` (the whole run).
See ``docs/atlas.md``.
"""

from .backends import BACKENDS, LocalBackend, RayBackend, make_backend
from .classes import attribute_layer
from .plan import LayerPlan, default_layers, make_batches, plan_layers
from .run import AtlasSummary, attribute_classes, build_atlas
from .settings import AtlasSettings, manifest
from .site import SiteBuilder, SiteInputs
from .store import AtlasStore, UnitRecord, UnitResult
from .worker import render_batch

__all__ = [
    "AtlasSettings", "AtlasStore", "AtlasSummary", "BACKENDS", "LayerPlan", "LocalBackend", "RayBackend", "SiteBuilder",
    "SiteInputs", "UnitRecord", "UnitResult", "attribute_classes", "attribute_layer", "build_atlas", "default_layers",
    "make_backend", "make_batches", "manifest", "plan_layers", "render_batch",
]
