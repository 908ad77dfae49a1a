"""Multifaceted feature visualization (Nguyen, Yosinski, Clune 2016).

A unit can fire for very different things; its facets are the clusters of
the real images that drive it, each rendered from its cluster's mean image.
See ``docs/facets.md``.

    from neuronscope.facets import parse_unit, multifaceted, write_facet_sheet
    unit = parse_unit(model, "class:goldfish")
    result = multifaceted(model, unit, "photos/")
    write_facet_sheet(result, "facets/")
"""

from .cluster import Clustering, choose_k, cluster, nearest_members, purity, reduce
from .embed import embed
from .examples import Examples, collect_examples, labels_from_manifest, unit_values
from .mfv import CENTER_BIASED, MEAN_INIT, MFVResult, Octave, render_mfv
from .pipeline import Facet, FacetResult, discover_facets, diverse_facets, multifaceted, rank_and_dedup, render_facets
from .sheet import write_facet_sheet
from ..units import Unit, parse_unit

__all__ = [
    "CENTER_BIASED", "Clustering", "Examples", "Facet", "FacetResult", "MEAN_INIT", "MFVResult", "Octave", "Unit",
    "choose_k", "cluster", "collect_examples", "discover_facets", "diverse_facets", "embed", "labels_from_manifest",
    "multifaceted", "nearest_members", "parse_unit", "purity", "rank_and_dedup", "reduce", "render_facets",
    "render_mfv", "unit_values", "write_facet_sheet",
]
