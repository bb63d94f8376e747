"""The corpus transform: a paper's text as a short dense vector (TF-IDF, then LSA).

Fitted on every stored paper (``fit``); applied to any paper, stored or new
(``Transform.embed``).  Kept as three arrays (the terms, their IDF, the SVD
components) so the database holds plain numbers a later version can still read.
"""

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digest.models import PaperRow

Matrix = NDArray[np.float32]
_NAME = re.compile(r"\W+")
_VECTORIZER = {"sublinear_tf": True, "stop_words": "english", "dtype": np.float32}


def text_of(paper: PaperRow) -> str:
    """Title, abstract, and the authors and categories a source gave, each one token
    (``au_yann_lecun``, ``cat_cs_cl``): a shared author or category is evidence too."""
    names = [f"au_{_NAME.sub('_', a.lower()).strip('_')}" for a in paper.meta.authors]
    categories = [f"cat_{_NAME.sub('_', c.lower()).strip('_')}" for c in paper.meta.categories]
    return " ".join([paper.title, paper.abstract, *names, *categories])


@dataclass(frozen=True)
class Transform:
    """TF-IDF over ``terms`` weighted by ``idf``, projected on ``components`` (dims x terms)."""

    terms: list[str]
    idf: NDArray[np.floating[Any]]
    components: Matrix

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    def embed(self, papers: Sequence[PaperRow]) -> Matrix:
        """One unit-length row per paper (cosine is a dot product); zeros for a paper
        that shares no term with the corpus."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        if not papers:
            return np.zeros((0, self.dims), dtype=np.float32)
        vectorizer = TfidfVectorizer(vocabulary=self.terms, **_VECTORIZER)
        vectorizer.idf_ = self.idf
        sparse = vectorizer.transform([text_of(p) for p in papers])
        return unit_rows(np.asarray(sparse @ self.components.T, dtype=np.float32))

    def to_blobs(self) -> tuple[bytes, bytes, bytes]:
        return "\n".join(self.terms).encode(), _save(self.idf), _save(self.components)

    @classmethod
    def from_blobs(cls, terms: bytes, idf: bytes, components: bytes) -> "Transform":
        return cls(terms.decode().split("\n"), _load(idf), _load(components))


def fit(papers: Sequence[PaperRow], *, max_terms: int, dims: int) -> tuple[Transform, Matrix]:
    """The transform fitted on ``papers``, and their vectors (in the same order).

    Terms in at least 2 papers and at most half of them, the ``max_terms`` most
    frequent; ``dims`` is capped by what a small corpus allows.
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    few = len(papers) < 20
    vectorizer = TfidfVectorizer(
        max_features=max_terms,
        min_df=1 if few else 2,
        max_df=1.0 if few else 0.5,
        **_VECTORIZER,
    )
    sparse = vectorizer.fit_transform([text_of(p) for p in papers])
    rank = max(1, min(dims, sparse.shape[1] - 1, sparse.shape[0] - 1))
    svd = TruncatedSVD(n_components=rank, algorithm="randomized", n_iter=5, random_state=0)
    vectors = svd.fit_transform(sparse)
    terms = [str(t) for t in vectorizer.get_feature_names_out()]
    transform = Transform(terms, vectorizer.idf_, svd.components_.astype(np.float32))
    return transform, unit_rows(vectors.astype(np.float32))


def unit_rows(matrix: Matrix) -> Matrix:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: Matrix = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return unit


def _save(array: NDArray[np.generic]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _load(data: bytes) -> NDArray[np.float32]:
    return np.load(io.BytesIO(data), allow_pickle=False)  # type: ignore[no-any-return]
