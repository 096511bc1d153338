"""Speaker clustering: FunASR's method (funasr.models.campplus), with the failures its users met fixed.

Pure functions on arrays, no model: window spans, clustering (known count, min-max, automatic), the
merge of look-alike clusters, the speaker timeline and the sentence-to-speaker assignment.

How FunASR 1.4.16 does it (``AutoModel`` with ``spk_model``, ``cluster_backend.ClusterBackend``):
1.5 s windows every 0.75 s inside the VAD segments (``sv_chunk``); a CAM++ embedding per window;
spectral clustering below 2048 windows, UMAP + HDBSCAN above (k-means when the count is known); clusters
whose centroids are within cosine 0.78 merged; a timeline of who speaks when (``postprocess``); each
sentence gets the speaker it overlaps most (``distribute_spk``).

Where we differ, and why:

* Fewer than 20 windows: FunASR labels them all speaker 0, so a two-person 15 s exchange is one speaker.
  We cluster them too, by average-linkage agglomeration that stops at CAM++'s own verification
  threshold (0.31, ``yesOrno_thr`` of the published model), which needs no minimum size.
* 2048 windows and more (about 26 minutes of speech): we first group the windows into
  ``MICRO_CLUSTERS`` k-means centroids, then run FunASR's own spectral clustering on the centroids, count
  known or not: memory O(windows x 192 + 2000^2), never a windows x windows matrix or a dense
  eigendecomposition of one (FunASR's 2 h file with a known count ran one on 10k x 10k; a 15 h file was
  killed at 100 GB). Measured on 2 CPUs with scripts/bench_speakers.py, six speakers of unequal shares
  (synthetic embeddings): on 9600 windows (2 h) 11-31 CPU s, +74 MB, 0.93-0.95 of windows right, where
  FunASR's UMAP + HDBSCAN took 190-230 CPU s, +270 MB, 0.95; on 72 000 (15 h) 62-93 CPU s, +161 MB, 0.96,
  against 540-840 CPU s, +715 MB, 0.94. UMAP is also unseeded (no two runs agree), and HDBSCAN's noise
  points (label -1: 1757 of the 72 000) become a speaker of their own in FunASR's relabelling. With a
  known count FunASR 1.4.16 runs k-means on the raw embeddings instead: fast, but 0.70-0.75 right there.
* Window spans and embeddings are kept together, row by row, so their counts cannot disagree
  (FunASR's ``assert len(segments) == len(labels)`` crash).
* A sentence overlapping no speech gets the nearest speaker, not speaker 0; the overlap is summed per
  speaker (FunASR's ``distribute_spk`` counts the first overlapping stretch twice).
* Everything is seeded: the same input gives the same labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SAMPLE_RATE = 16000
WINDOW_S = 1.5
SHIFT_S = 0.75
WINDOW_SAMPLES = int(WINDOW_S * SAMPLE_RATE)
SHIFT_SAMPLES = int(SHIFT_S * SAMPLE_RATE)

#: FunASR clusters nothing below this many windows (all speaker 0); we cluster by agglomeration there.
MIN_SPECTRAL = 20
#: FunASR's dense spectral clustering runs below this many windows; above, we reduce to centroids first.
DENSE_LIMIT = 2048
#: k-means centroids the windows of a long recording are grouped into before spectral clustering
#: (just under DENSE_LIMIT, so that FunASR's spectral clustering sees as many points as it can).
MICRO_CLUSTERS = 2000
#: Clusters whose centroids are at least this cosine-similar are one speaker (FunASR's ``merge_thr``).
MERGE_COSINE = 0.78
#: Average cosine similarity at which two groups of windows are the same speaker (CAM++'s ``yesOrno_thr``).
SAME_SPEAKER_COSINE = 0.31
#: Share of neighbours each window keeps in the spectral affinity (FunASR's ``pval``).
PRUNE_SHARE = 0.022
#: A stretch of the timeline shorter than this (seconds) goes to a neighbour (FunASR's ``smooth``).
MIN_TURN_S = 0.7
SEED = 0


# ---- windows -------------------------------------------------------------------------------------


def window_spans(start_ms: int, samples: int) -> list[tuple[float, float, int, int]]:
    """FunASR's ``sv_chunk`` for one VAD segment: ``(start_s, end_s, first, last)`` per window, where
    first:last are sample offsets into the segment (a window shorter than 1.5 s is zero-padded).

    The last window is moved back to end at the segment's end; times are seconds on the audio's timeline,
    computed as FunASR computes them (so that the timeline and its rounding are the same)."""
    spans = []
    segment_start = start_ms / 1000.0
    last_end = 0
    for first in range(0, samples, SHIFT_SAMPLES):
        last = min(first + WINDOW_SAMPLES, samples)
        if last <= last_end:
            break
        last_end = last
        first = max(0, last - WINDOW_SAMPLES)
        spans.append((first / SAMPLE_RATE + segment_start, last / SAMPLE_RATE + segment_start, first, last))
    return spans


# ---- clustering ------------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1)


def _first_appearance(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0, 1, ... in order of first appearance (FunASR's ``correct_labels``)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=int)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.ravel()]


def agglomerative(embeddings: np.ndarray, num_speakers: int | None = None, min_speakers: int = 1,
                  max_speakers: int = 16, threshold: float = SAME_SPEAKER_COSINE) -> np.ndarray:
    """Average-linkage clustering on cosine distance, for a handful of windows.

    With a known count the tree is cut into that many clusters; otherwise groups are joined while their
    average similarity is at least ``threshold``, and the result is held within min..max."""
    from scipy.cluster.hierarchy import fcluster, linkage

    n = len(embeddings)
    if n < 2:
        return np.zeros(n, dtype=int)
    tree = linkage(_unit(np.asarray(embeddings, dtype=np.float64)), method="average", metric="cosine")
    if num_speakers is not None:
        labels = fcluster(tree, t=min(num_speakers, n), criterion="maxclust")
    else:
        labels = fcluster(tree, t=1.0 - threshold, criterion="distance")
        found = len(np.unique(labels))
        if found > max_speakers:
            labels = fcluster(tree, t=max_speakers, criterion="maxclust")
        elif found < min(min_speakers, n):
            labels = fcluster(tree, t=min(min_speakers, n), criterion="maxclust")
    return _first_appearance(labels)


def spectral(embeddings: np.ndarray, num_speakers: int | None = None, min_speakers: int = 1,
             max_speakers: int = 15, seed: int = SEED) -> np.ndarray:
    """FunASR's ``SpectralCluster``: cosine affinity, each row pruned to its top 2.2 % (at least 6),
    symmetrised, unnormalised Laplacian, eigengap within min..max (or the known count), k-means on the
    eigenvectors. Float32 like FunASR; vectorised; k-means seeded. Dense: for fewer than 2048 rows."""
    import scipy.linalg
    from sklearn.cluster import k_means
    from sklearn.metrics.pairwise import cosine_similarity

    x = np.asarray(embeddings, dtype=np.float32)
    n = len(x)
    affinity = cosine_similarity(x, x)
    share = 6.0 / n if n * PRUNE_SHARE < 6 else PRUNE_SHARE
    dropped = int((1 - share) * n)
    if dropped > 0:
        for rows in range(0, n, 256):  # row by row as FunASR does; in blocks, to bound the index arrays
            block = affinity[rows : rows + 256]
            np.put_along_axis(block, np.argsort(block, axis=1)[:, :dropped], 0, axis=1)
    affinity += affinity.T
    affinity *= 0.5
    np.fill_diagonal(affinity, 0)
    degree = np.abs(affinity).sum(axis=1)
    laplacian = np.negative(affinity, out=affinity)
    laplacian[np.diag_indices(n)] = degree
    eigenvalues, eigenvectors = scipy.linalg.eigh(laplacian, overwrite_a=True)
    if num_speakers is not None:
        k = min(num_speakers, n)
    else:
        low, high = max(1, min_speakers), max(1, max_speakers)
        gaps = np.diff(eigenvalues[low - 1 : high + 1].astype(np.float64))
        k = int(np.argmax(gaps)) + low if len(gaps) else low
    if k <= 1:
        return np.zeros(n, dtype=int)
    _, labels, _ = k_means(eigenvectors[:, :k], k, random_state=seed)
    return labels


def reduced_spectral(embeddings: np.ndarray, num_speakers: int | None = None, min_speakers: int = 1,
                     max_speakers: int = 15, centroids: int = MICRO_CLUSTERS, seed: int = SEED) -> np.ndarray:
    """Spectral clustering of a long recording without an N x N matrix: the windows are grouped into
    ``centroids`` k-means clusters (a few dozen windows of one voice each), FunASR's spectral clustering
    labels the centroids, and every window takes its centroid's label.

    k-means++ seeding spreads the centroids over every voice, small ones included (seeding at random
    puts them where the windows are dense, and a minor speaker may get none); one candidate per step
    instead of scikit-learn's greedy ~10 keeps seeding 2000 centroids on 72 000 windows near a minute."""
    from sklearn.cluster import KMeans, kmeans_plusplus

    unit = _unit(np.asarray(embeddings, dtype=np.float32))
    m = min(centroids, len(unit))
    seeds, _ = kmeans_plusplus(unit, m, n_local_trials=1, random_state=seed)
    groups = KMeans(m, init=seeds, n_init=1, max_iter=10).fit(unit)
    used, grouped = np.unique(groups.labels_, return_inverse=True)
    labels = spectral(groups.cluster_centers_[used], num_speakers, min_speakers, max_speakers, seed)
    return labels[grouped.ravel()]


def merge_by_cosine(labels: np.ndarray, embeddings: np.ndarray, threshold: float = MERGE_COSINE,
                    min_speakers: int = 1) -> np.ndarray:
    """FunASR's ``merge_by_cos``: join the two clusters with the most similar centroids while that
    similarity is at least ``threshold`` (and more than ``min_speakers`` clusters remain)."""
    labels = _first_appearance(np.asarray(labels))
    x = np.asarray(embeddings, dtype=np.float32)
    while True:
        count = int(labels.max()) + 1 if len(labels) else 0
        if count <= max(1, min_speakers):
            return labels
        centres = np.stack([x[labels == i].mean(axis=0) for i in range(count)])
        centres = _unit(centres)
        similarity = np.triu(centres @ centres.T, 1)
        keep, gone = np.unravel_index(np.argmax(similarity), similarity.shape)
        if similarity[keep, gone] < threshold:
            return labels
        labels = np.where(labels == gone, keep, labels)
        labels = np.where(labels > gone, labels - 1, labels)


def cluster(embeddings: np.ndarray, num_speakers: int | None = None, min_speakers: int = 1,
            max_speakers: int = 16, seed: int = SEED) -> np.ndarray:
    """One label per window (0.. in order of first appearance).

    ``num_speakers`` when known (at most one per window); otherwise the count is chosen within
    ``min_speakers``..``max_speakers``."""
    x = np.asarray(embeddings, dtype=np.float32)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=int)
    if n == 1 or num_speakers == 1:
        return np.zeros(n, dtype=int)
    if num_speakers is not None:
        num_speakers = min(num_speakers, n)
    else:
        max_speakers = min(max_speakers, n)
        min_speakers = min(max(1, min_speakers), max_speakers)
    if n < MIN_SPECTRAL:
        labels = agglomerative(x, num_speakers, min_speakers, max_speakers)
    elif n < DENSE_LIMIT:
        labels = spectral(x, num_speakers, min_speakers, max_speakers, seed)
    else:
        labels = reduced_spectral(x, num_speakers, min_speakers, max_speakers, seed=seed)
    if num_speakers is None:
        labels = merge_by_cosine(labels, x, MERGE_COSINE, min_speakers)
    return _first_appearance(labels)


# ---- timeline and sentences ------------------------------------------------------------------------


def timeline(spans: Sequence[tuple[float, float]], labels: Sequence[int]) -> list[tuple[float, float, int]]:
    """Who speaks when: FunASR's ``postprocess`` on windows ``(start_s, end_s)`` in time order and their
    labels. Same-speaker windows that touch are joined, overlaps between speakers split at the middle,
    stretches under 0.7 s given to the nearer neighbour, times rounded to 10 ms as FunASR rounds them."""
    if len(spans) != len(labels):
        raise ValueError(f"{len(spans)} windows but {len(labels)} labels")
    if not len(spans):
        return []
    labels = _first_appearance(np.asarray(labels))
    turns = [[float(s), float(e), int(k)] for (s, e), k in zip(spans, labels)]

    def join(turns: list[list]) -> list[list]:
        out = [turns[0]]
        for turn in turns[1:]:
            if turn[2] != out[-1][2] or turn[0] > out[-1][1]:
                out.append(turn)
            else:
                out[-1][1] = turn[1]
        return out

    turns = join(turns)
    for i in range(1, len(turns)):
        if turns[i - 1][1] > turns[i][0] + 1e-4:
            middle = (turns[i][0] + turns[i - 1][1]) / 2
            turns[i][0] = turns[i - 1][1] = middle
    if len(turns) >= 2:
        for i, turn in enumerate(turns):
            turn[0], turn[1] = round(turn[0], 2), round(turn[1], 2)
            if turn[1] - turn[0] < MIN_TURN_S:
                if i == 0:
                    turn[2] = turns[1][2]
                elif i == len(turns) - 1:
                    turn[2] = turns[i - 1][2]
                elif turn[0] - turns[i - 1][1] <= turns[i + 1][0] - turn[1]:
                    turn[2] = turns[i - 1][2]
                else:
                    turn[2] = turns[i + 1][2]
        turns = join(turns)
    return [(s, e, k) for s, e, k in turns]


def assign(spans_ms: Sequence[tuple[int, int]], turns: Sequence[tuple[float, float, int]]) -> list[int]:
    """For each ``(start_ms, end_ms)``, the speaker whose turns overlap it most in total (ties: the
    earlier turn's); one that overlaps no turn takes the nearest turn's speaker. ``turns`` must not be
    empty."""
    if not turns:
        raise ValueError("no speaker turns to assign from")
    starts = np.array([t[0] * 1000 for t in turns])
    ends = np.array([t[1] * 1000 for t in turns])
    speakers = np.array([t[2] for t in turns])
    out = []
    for start, end in spans_ms:
        overlap = np.clip(np.minimum(end, ends) - np.maximum(start, starts), 0, None)
        if overlap.max() > 0:
            totals: dict[int, float] = {}
            for k, o in zip(speakers, overlap):
                if o > 0:
                    totals[int(k)] = totals.get(int(k), 0.0) + float(o)
            best = max(totals.values())
            out.append(next(k for k in totals if totals[k] == best))  # dicts keep the turns' order
        else:
            distance = np.maximum(starts - end, 0) + np.maximum(start - ends, 0)
            out.append(int(speakers[int(np.argmin(distance))]))
    return out
