"""Prompt vectors fitted on the arena's own prompts, and topics found by clustering them.

Pure numpy/scipy/scikit-learn; no I/O, no Django. Randomness only through a passed
``np.random.Generator``.

The local encoder needs no download: TF-IDF over word unigrams/bigrams and over character 3-5
grams (within word boundaries), concatenated, reduced by a truncated SVD and scaled to unit length,
so that a dot product is a cosine similarity. It is fitted on a corpus, so its vectors belong to
that fit: a vector from one fit and a vector from another are not comparable. The fit's state is a
few arrays (:meth:`LocalEncoder.to_arrays`) and its ``version`` is a hash of them.

Topics: k-means on the unit vectors, with k chosen by the largest mean silhouette (cosine
distance) over ``k_range`` on a sample; each topic is named by the word terms whose mean TF-IDF
weight in the topic most exceeds their mean weight over the whole corpus.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

# scikit-learn (and the pandas it loads: ~0.5 s, ~140 MB) is imported where a topic model is
# built or applied, not with this module: the web process and the generation worker import the
# leaderboard's views and tasks (URL checks, Celery's task discovery) without ever using it.
if TYPE_CHECKING:
    from sklearn.feature_extraction.text import TfidfVectorizer

Float = NDArray[np.float64]
Int = NDArray[np.int64]

DIMENSIONS = 16
MAX_WORD_FEATURES = 20_000
MAX_CHAR_FEATURES = 20_000
# Silhouette is quadratic in the sample; 2,000 prompts take well under a second per k.
SILHOUETTE_SAMPLE = 2000
# k-means runs on a sample this large; every prompt then goes to its nearest centroid.
KMEANS_SAMPLE = 20_000
K_RANGE = (2, 12)


def _word_vectorizer(vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        analyzer="word", ngram_range=(1, 2), min_df=2, max_df=0.5, sublinear_tf=True,
        max_features=MAX_WORD_FEATURES, vocabulary=vocabulary, stop_words="english",
        dtype=np.float32,
    )  # fmt: skip


def _char_vectorizer(vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        analyzer="char_wb", ngram_range=(3, 5), min_df=2, max_df=0.5, sublinear_tf=True,
        max_features=MAX_CHAR_FEATURES, vocabulary=vocabulary, dtype=np.float32,
    )  # fmt: skip


def _unit(x: Float) -> Float:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    out: Float = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    return out


@dataclass
class LocalEncoder:
    """A fitted TF-IDF (word + character n-grams) and truncated SVD; see the module docstring."""

    word: TfidfVectorizer
    char: TfidfVectorizer
    components: Float  # (dimensions, word features + char features)

    @classmethod
    def fit(
        cls, prompts: Sequence[str], *, dimensions: int = DIMENSIONS, seed: int = 0
    ) -> LocalEncoder:
        """Fit on ``prompts`` (see :meth:`fit_transform`)."""
        return cls.fit_transform(prompts, dimensions=dimensions, seed=seed)[0]

    @classmethod
    def fit_transform(
        cls, prompts: Sequence[str], *, dimensions: int = DIMENSIONS, seed: int = 0
    ) -> tuple[LocalEncoder, Float]:
        """Fit on ``prompts`` (at least 2) and return the encoder and their unit vectors.

        Raises
        ------
        ValueError
            Too few prompts, or no term that occurs in two of them.
        """
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        if len(prompts) < 2:
            raise ValueError("the local encoder needs at least 2 prompts")
        word, char = _word_vectorizer(), _char_vectorizer()
        # A corpus too small or too uniform for the min_df/max_df limits: relax them.
        try:
            xw = word.fit_transform(prompts)
        except ValueError:
            word = TfidfVectorizer(analyzer="word", sublinear_tf=True, dtype=np.float32)
            word.set_params(max_features=MAX_WORD_FEATURES, ngram_range=(1, 2))
            xw = word.fit_transform(prompts)
        try:
            xc = char.fit_transform(prompts)
        except ValueError:
            char = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), dtype=np.float32)
            xc = char.fit_transform(prompts)
        x = sparse.hstack([xw, xc]).tocsr()
        k = max(1, min(dimensions, x.shape[1] - 1, x.shape[0] - 1))
        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=5, random_state=seed)
        svd.fit(x)
        encoder = cls(word, char, np.asarray(svd.components_, dtype=np.float64))
        # x @ components.T, not the SVD's own U * S: exactly what `transform` gives a query.
        return encoder, _unit(np.asarray(x @ encoder.components.T, dtype=np.float64))

    def tfidf(self, prompts: Sequence[str]) -> sparse.csr_matrix:
        """The concatenated TF-IDF rows (word block first)."""
        return sparse.hstack([self.word.transform(prompts), self.char.transform(prompts)]).tocsr()

    def transform(self, prompts: Sequence[str]) -> Float:
        """Unit vectors (n, dimensions); a prompt with no known term gets the zero vector."""
        reduced = np.asarray(self.tfidf(prompts) @ self.components.T, dtype=np.float64)
        return _unit(reduced)

    def word_terms(self) -> NDArray[np.str_]:
        return np.asarray(self.word.get_feature_names_out())

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """The fitted state as plain arrays (no pickle): vocabularies, idf weights, components."""
        out: dict[str, NDArray[Any]] = {"components": self.components}
        for name, vec in (("word", self.word), ("char", self.char)):
            terms = vec.get_feature_names_out()
            out[f"{name}_terms"] = np.asarray(terms, dtype=str)
            out[f"{name}_idf"] = np.asarray(vec.idf_, dtype=np.float64)
            out[f"{name}_ngram"] = np.asarray(vec.ngram_range, dtype=np.int64)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, NDArray[Any]]) -> LocalEncoder:
        """The inverse of :meth:`to_arrays`: transforms exactly as the fitted encoder did."""
        vecs = []
        for name, make in (("word", _word_vectorizer), ("char", _char_vectorizer)):
            terms = [str(t) for t in arrays[f"{name}_terms"]]
            vec = make({t: i for i, t in enumerate(terms)})
            lo, hi = (int(v) for v in arrays[f"{name}_ngram"])
            vec.set_params(ngram_range=(lo, hi))
            # A fixed vocabulary needs a fit to set its internal state; idf_ then replaces the
            # idf of this throwaway fit.
            vec.fit(terms[:1] or ["x"])
            vec.idf_ = np.asarray(arrays[f"{name}_idf"], dtype=np.float64)
            vecs.append(vec)
        return cls(vecs[0], vecs[1], np.asarray(arrays["components"], dtype=np.float64))

    def version(self) -> str:
        """A hash of the fitted state: equal versions transform equally."""
        digest = hashlib.sha256()
        for key, value in sorted(self.to_arrays().items()):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Topics:
    """A clustering: ``labels`` per prompt (0..k-1, biggest topic first), unit ``centroids``,
    the mean silhouette of each k tried (``scores``) and the chosen ``k``."""

    labels: Int
    centroids: Float
    k: int
    scores: dict[int, float]


def cluster_topics(
    vectors: Float,
    *,
    rng: np.random.Generator,
    k_range: tuple[int, int] = K_RANGE,
    sample: int = SILHOUETTE_SAMPLE,
) -> Topics:
    """k-means on unit vectors, k with the best mean silhouette (cosine) on a sample.

    Parameters
    ----------
    vectors : array (n, d)
        Unit prompt vectors.
    rng : numpy.random.Generator
        Draws the silhouette sample and seeds k-means.
    k_range : (int, int)
        Smallest and largest k tried (inclusive); capped at n - 1.
    sample : int
        Prompts on which the silhouette is computed.

    Returns
    -------
    Topics
        With k = 1 (every prompt in topic 0) when fewer than 3 distinct vectors exist.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    distinct = np.unique(np.round(x, 6), axis=0).shape[0] if n else 0
    hi = min(k_range[1], distinct - 1)
    if n == 0 or hi < k_range[0]:
        centroid = _unit(x.mean(axis=0, keepdims=True)) if n else np.zeros((1, x.shape[1]))
        return Topics(np.zeros(n, dtype=np.int64), centroid, 1, {})
    fit_rows = rng.choice(n, size=min(KMEANS_SAMPLE, n), replace=False)
    pick = rng.choice(n, size=min(sample, n), replace=False)
    seed = int(rng.integers(2**31))
    scores: dict[int, float] = {}
    best: tuple[float, int, Int, Float] | None = None
    for k in range(k_range[0], hi + 1):
        km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x[fit_rows])
        labels = np.asarray(km.predict(x), dtype=np.int64)
        if np.unique(labels[pick]).size < 2:
            continue
        score = float(silhouette_score(x[pick], labels[pick], metric="cosine"))
        scores[k] = round(score, 4)
        if best is None or score > best[0]:
            best = (score, k, labels, np.asarray(km.cluster_centers_, dtype=np.float64))
    if best is None:
        return Topics(np.zeros(n, dtype=np.int64), _unit(x.mean(axis=0, keepdims=True)), 1, {})
    _, k, labels, centres = best
    # Number topics biggest first, so that topic:0 is the most common one.
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    renumber = np.empty(k, dtype=np.int64)
    renumber[order] = np.arange(k)
    return Topics(renumber[labels], _unit(centres[order]), k, scores)


def topic_terms(
    tfidf_words: sparse.csr_matrix, labels: Int, k: int, terms: NDArray[np.str_], *, top: int = 5
) -> list[list[str]]:
    """Each topic's most characteristic word terms: mean TF-IDF in the topic minus the corpus's."""
    x = sparse.csr_matrix(tfidf_words)
    overall = np.asarray(x.mean(axis=0)).ravel()
    out: list[list[str]] = []
    for t in range(k):
        rows = x[labels == t]
        if rows.shape[0] == 0:
            out.append([])
            continue
        lift = np.asarray(rows.mean(axis=0)).ravel() - overall
        best = np.argsort(-lift, kind="stable")[:top]
        out.append([str(terms[i]) for i in best if lift[i] > 0])
    return out


def nearest_topic(vectors: Float, centroids: Float) -> Int:
    """Index of the most similar centroid (cosine) for each vector."""
    return np.asarray(np.argmax(np.asarray(vectors) @ np.asarray(centroids).T, axis=1), np.int64)
