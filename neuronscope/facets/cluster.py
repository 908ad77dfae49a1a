"""Reduce embeddings, cluster them into facets, and pick the images nearest each centre.

Following Nguyen et al. 2016 (docs/design.md 5.2):

* ``reduce``: ``tsne`` (PCA to 50-d first, then 2-d t-SNE, perplexity
  min(30, (n-1)/3), fixed seed) or ``pca`` (the first ``dims`` principal
  components, default 10), or ``none``;
* k-means (k-means++, 10 restarts, fixed seed) on the reduced points;
* k, when not given, is chosen by the **silhouette criterion**: every k from 2
  to k_max = min(10, n // 15) (or a given smaller cap) is tried and the k with the largest mean
  silhouette wins; a unit whose best silhouette is below 0.25 (no real cluster
  structure) gets one facet. With fewer than 30 examples there is one facet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import NeuronscopeError

REDUCERS = ("tsne", "pca", "none")
MIN_SILHOUETTE = 0.25


@dataclass
class Clustering:
    labels: np.ndarray  # (N,) cluster of each example, 0..k-1
    centres: np.ndarray  # (k, d) in the reduced space
    coords: np.ndarray  # (N, d) reduced points
    k: int
    reduce: str
    k_scores: dict[int, float] = field(default_factory=dict)  # silhouette per tried k
    k_rule: str = ""

    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.k)


def reduce(emb: np.ndarray, method: str = "tsne", *, dims: int | None = None, seed: int = 0) -> np.ndarray:
    """(N, d) points: t-SNE 2-d (after PCA-50), the first principal components, or the input."""
    if method not in REDUCERS:
        raise NeuronscopeError(f"unknown reduction {method!r}; valid: {', '.join(REDUCERS)}")
    x = np.asarray(emb, dtype=np.float64)
    n = len(x)
    if method == "none" or n < 3:
        return x
    from sklearn.decomposition import PCA

    if method == "pca":
        d = min(dims or 10, n - 1, x.shape[1])
        return PCA(n_components=d, random_state=seed).fit_transform(x)
    from sklearn.manifold import TSNE

    pre = PCA(n_components=min(50, n - 1, x.shape[1]), random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    return TSNE(n_components=dims or 2, perplexity=perplexity, init="pca", random_state=seed,
                learning_rate="auto").fit_transform(pre)


def kmeans(points: np.ndarray, k: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, init="k-means++", n_init=10, random_state=seed).fit(points)
    return km.labels_.astype(np.int64), km.cluster_centers_


def k_max(n: int) -> int:
    return max(1, min(10, n // 15))


def choose_k(points: np.ndarray, *, seed: int = 0, most: int | None = None) -> tuple[int, dict[int, float], str]:
    """k by the silhouette criterion (see the module docstring); also the scores and the rule used.

    ``most`` caps the k tried (default: k_max, up to 10)."""
    from sklearn.metrics import silhouette_score

    n = len(points)
    if n < 30:
        return 1, {}, f"one facet: only {n} examples (clustering needs 30)"
    hi = k_max(n) if most is None else min(k_max(n), most)
    if most is not None and most < 2:
        return 1, {}, "one facet (at most 1)"
    if hi < 2:
        return 1, {}, "one facet: too few examples for two clusters of 15"
    scores = {}
    for k in range(2, hi + 1):
        labels, _ = kmeans(points, k, seed=seed)
        scores[k] = float(silhouette_score(points, labels))
    best = max(scores, key=lambda k: (scores[k], -k))
    if scores[best] < MIN_SILHOUETTE:
        return 1, scores, f"one facet: best silhouette {scores[best]:.2f} < {MIN_SILHOUETTE} (no cluster structure)"
    capped = f" (at most {most})" if most is not None and most < k_max(n) else ""
    return best, scores, f"k={best}: largest silhouette ({scores[best]:.2f}) over k=2..{hi}{capped}"


def cluster(emb: np.ndarray, k: int | None = None, *, method: str = "tsne", dims: int | None = None, seed: int = 0,
            max_k: int | None = None) -> Clustering:
    """Reduce and cluster embeddings into ``k`` facets (``None``: choose k, at most ``max_k``).

    scikit-learn's OpenMP threads are limited to one (t-SNE is slower with more on a
    shared machine; figures in docs/facets.md).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _cluster(emb, k, method=method, dims=dims, seed=seed, max_k=max_k)


def _cluster(emb: np.ndarray, k: int | None, *, method: str, dims: int | None, seed: int,
             max_k: int | None = None) -> Clustering:
    n = len(emb)
    if n == 0:
        raise NeuronscopeError("no examples to cluster")
    if k is not None and not 1 <= k <= n:
        raise NeuronscopeError(f"k must be between 1 and the number of examples ({n}), got {k}")
    pts = reduce(emb, method, dims=dims, seed=seed)
    scores: dict[int, float] = {}
    if k is None:
        if max_k is not None and max_k < 1:
            raise NeuronscopeError(f"the most facets must be at least 1, got {max_k}")
        k, scores, rule = choose_k(pts, seed=seed, most=max_k)
    else:
        rule = f"k={k} given"
    if k == 1:
        labels, centres = np.zeros(n, dtype=np.int64), pts.mean(0, keepdims=True)
    else:
        labels, centres = kmeans(pts, k, seed=seed)
    return Clustering(labels, centres, pts, k, method, scores, rule)


def nearest_members(c: Clustering, n: int = 15) -> list[np.ndarray]:
    """Per cluster, the indices of up to ``n`` members nearest its centre, nearest first."""
    out = []
    for j in range(c.k):
        members = np.nonzero(c.labels == j)[0]
        d = np.linalg.norm(c.coords[members] - c.centres[j], axis=1)
        out.append(members[np.argsort(d, kind="stable")[:n]])
    return out


def purity(labels: np.ndarray, truth: np.ndarray) -> float:
    """Share of examples whose cluster's majority true label is their own."""
    labels, truth = np.asarray(labels), np.asarray(truth)
    hits = 0
    for j in np.unique(labels):
        t = truth[labels == j]
        hits += np.bincount(t).max()
    return hits / len(labels)
