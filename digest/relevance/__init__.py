"""Relevance: a model per reader, learned on this machine from their feedback.

Why this shape, measured at 10,000 readers (``bench/model.py``): a weight vector
per reader over the TF-IDF vocabulary (20,000 terms) would be 80 KB each, 800 MB
for everyone, and scoring would be a sparse product per reader.  Instead the
corpus is fitted once (``features``: TF-IDF over title, abstract, authors and
categories, then a truncated SVD to ``[model] dims`` dimensions, LSA), and each
reader's classifier (``training``: logistic regression, likes against dismissals
and a sample of the rest, as arxiv-sanity-lite does in TF-IDF space) lives in that
small space: 516 bytes a reader at 128 dimensions, and scoring every reader is one
dense matrix product (``scoring``).  "Because you liked X" is the liked paper
nearest by cosine in the same space.  ``evaluation`` replays history to say
whether it helps.

Nothing is downloaded and nothing leaves the machine: the model is fitted on the
stored papers and kept in the database (numpy arrays saved with ``np.save``,
never pickles).  scikit-learn and numpy are imported only by these modules, and
these only where a model is fitted or applied, so the CLI starts without them.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from digest.models import PaperRow
from digest.store import Store

if TYPE_CHECKING:
    from digest.relevance.scoring import Scorer


def scorer_for(store: Store, papers: Sequence[PaperRow]) -> "Scorer | None":
    """The last saved model over ``papers``, or None (and no numpy imported) before the
    first training."""
    if store.model_fitted_at() is None:
        return None
    from digest.relevance.scoring import Scorer

    return Scorer.load(store, papers)
