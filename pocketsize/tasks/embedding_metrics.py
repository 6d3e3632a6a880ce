"""Measures of sentence embeddings (numpy, scikit-learn, scipy; nothing from a hub).

Alone, an embedder is scored the way MTEB scores one on a labelled set: a logistic regression
on the frozen embeddings (cross-validated within the split, so one labelled split suffices)
and k-means clustering (V-measure against the labels). Against a reference embedder: how many
of each text's nearest neighbours the two share, how well the rankings of all pairwise
similarities agree (Spearman) and, where the widths match, the cosine between the two
embeddings of each text.
"""

from __future__ import annotations

import numpy as np

NEIGHBOURS = 10
FOLDS = 5
SEED = 0
SPEARMAN_SAMPLE = 600  # texts whose pairwise similarities are ranked (n^2 / 2 pairs)


def as_matrix(embeddings) -> np.ndarray:
    return np.asarray(np.stack([np.asarray(e, dtype=np.float32) for e in embeddings]))


def fingerprint(embeddings, labels) -> str:
    """A key for one set of embeddings and labels (their bytes)."""
    import hashlib

    digest = hashlib.sha1(as_matrix(embeddings).tobytes())
    digest.update(np.asarray(labels).tobytes())
    return digest.hexdigest()


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def classification_hits(embeddings, labels) -> np.ndarray:
    """1.0 where a logistic regression, cross-validated in FOLDS stratified folds, predicts
    the text's label (fewer folds when a class is rarer)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.asarray(labels)
    folds = int(min(FOLDS, np.bincount(np.unique(y, return_inverse=True)[1]).min()))
    if folds < 2:
        return np.zeros(len(y))
    split = StratifiedKFold(folds, shuffle=True, random_state=SEED)
    predicted = cross_val_predict(
        LogisticRegression(max_iter=1000), as_matrix(embeddings), y, cv=split
    )
    return (predicted == y).astype(float)


def clustering_v_measure(embeddings, labels) -> float:
    from sklearn.cluster import KMeans
    from sklearn.metrics import v_measure_score

    y = np.asarray(labels)
    k = len(np.unique(y))
    clusters = KMeans(k, n_init=10, random_state=SEED).fit_predict(unit(as_matrix(embeddings)))
    return float(v_measure_score(y, clusters))


def nearest(x: np.ndarray, k: int) -> np.ndarray:
    """Each row's k most cosine-similar other rows."""
    sims = unit(x) @ unit(x).T
    np.fill_diagonal(sims, -np.inf)
    k = min(k, len(x) - 1)
    return np.argpartition(-sims, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((len(x), 0), int)


def neighbour_overlap(embeddings, reference, k: int = NEIGHBOURS) -> np.ndarray:
    """Per text: the share of its k nearest neighbours under `reference` that `embeddings`
    also puts among its k nearest (both within the same texts)."""
    mine, theirs = nearest(as_matrix(embeddings), k), nearest(as_matrix(reference), k)
    if mine.shape[1] == 0:
        return np.ones(len(mine))
    return np.array([len(set(a) & set(b)) / len(b) for a, b in zip(mine, theirs)])


def similarity_spearman(embeddings, reference, seed: int = SEED) -> float:
    """Spearman correlation between the two embedders' cosine similarities of every pair of
    texts (of a seeded sample of SPEARMAN_SAMPLE texts)."""
    from scipy.stats import spearmanr

    x, r = as_matrix(embeddings), as_matrix(reference)
    if len(x) > SPEARMAN_SAMPLE:
        keep = np.random.default_rng(seed).choice(len(x), SPEARMAN_SAMPLE, replace=False)
        x, r = x[keep], r[keep]
    upper = np.triu_indices(len(x), 1)
    if len(upper[0]) < 2:
        return float("nan")
    return float(spearmanr((unit(x) @ unit(x).T)[upper], (unit(r) @ unit(r).T)[upper])[0])


def cosine_to_reference(embeddings, reference) -> np.ndarray | None:
    """Per text, the cosine between its two embeddings; None when the widths differ."""
    x, r = as_matrix(embeddings), as_matrix(reference)
    if x.shape[1] != r.shape[1]:
        return None
    return (unit(x) * unit(r)).sum(axis=1)
