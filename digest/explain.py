"""``digest explain``: whether a paper is in a subscriber's next digest, and why.

The filter's verdict term by term, the window, what was already sent, the rank
in the next digest and, for a reader with a relevance model, the model's score
for the paper and the liked paper nearest to it.
"""

from dataclasses import dataclass
from datetime import datetime

from digest.config import DigestConfig
from digest.match import pending, shared_stemmer
from digest.models import PaperRow, Subscriber
from digest.query import Corpus, Explanation, parse
from digest.relevance import scorer_for
from digest.stemming import Stemmer
from digest.store import Store
from digest.windows import Window, documents


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a paper is in a subscriber's next digest, and why."""

    included: bool
    reasons: list[str]
    explanation: Explanation


def explain(
    store: Store,
    subscriber: Subscriber,
    paper: PaperRow,
    settings: DigestConfig,
    now: datetime,
    stemmer: Stemmer | None = None,
) -> Verdict:
    """Say in words why ``paper`` is or is not in the subscriber's next digest."""
    node = parse(subscriber.filter)
    corpus = Corpus(stemmer or shared_stemmer(), documents([paper]))
    why = corpus.explain(node, 0)
    reasons = _filter_reasons(why, subscriber.filter)
    reasons.extend(_model_reasons(store, subscriber, paper))
    delivered = store.delivery(subscriber.id, paper.seq)
    if delivered is not None:
        reasons.append(
            f"already put in digest #{delivered['digest_id']} on {delivered['created_at'][:10]} "
            f"({delivered['status']})"
        )
    in_window = _in_window(store, subscriber, paper, settings, now, reasons)
    receiving = subscriber.status == "active"
    if not receiving:
        reasons.append(f"the subscriber is {subscriber.status}: no digest is sent to them")
    if why.matches and delivered is None and in_window and receiving:
        included, position = _rank_in_pending(store, subscriber, paper, settings, now, stemmer)
        reasons.append(position)
    else:
        included = False
    return Verdict(included, reasons, why)


def _filter_reasons(why: Explanation, query: str) -> list[str]:
    reasons = []
    if why.matched:
        reasons.append(f"matched: {', '.join(why.matched)}")
    if why.missing:
        reasons.append(f"missing: {', '.join(why.missing)}")
    if why.excluded_by:
        reasons.append(f"excluded by NOT: {', '.join(why.excluded_by)}")
    verdict = "matches" if why.matches else "does not match"
    reasons.insert(0, f"the filter {query!r} {verdict} this paper")
    return reasons


def _model_reasons(store: Store, subscriber: Subscriber, paper: PaperRow) -> list[str]:
    """The reader's model's score for the paper and the liked paper nearest to it."""
    scorer = scorer_for(store, [paper])
    if scorer is None or not scorer.knows(subscriber.id):
        return []
    score = float(scorer.scores(subscriber.id)[0])
    nearest = scorer.because(subscriber.id, 0)
    liked = f"; the liked paper nearest to it: {nearest!r}" if nearest else ""
    return [f"the reader's relevance model scores it {score:.2f}{liked}"]


def _in_window(
    store: Store,
    subscriber: Subscriber,
    paper: PaperRow,
    settings: DigestConfig,
    now: datetime,
    reasons: list[str],
) -> bool:
    window = _window(store, subscriber, settings, now)
    inside = window.holds(paper)
    if not inside:
        reasons.append(
            f"first seen {paper.first_seen[:10]}, outside the window: {window.description}"
        )
    return inside


def _rank_in_pending(
    store: Store,
    subscriber: Subscriber,
    paper: PaperRow,
    settings: DigestConfig,
    now: datetime,
    stemmer: Stemmer | None,
) -> tuple[bool, str]:
    """Whether the paper makes the cap of the next digest, and where it ranks, in words
    (as the digest ranks: by the reader's model when they have one)."""
    upcoming = pending(store, subscriber, settings, now, stemmer)
    rank = next(i for i, m in enumerate(upcoming.matches, start=1) if m.paper.seq == paper.seq)
    if rank > settings.max_papers:
        cap = settings.max_papers
        place = f"beyond the cap of {cap} (on the digest's more page)"
        return False, f"ranked {rank} of {len(upcoming.matches)}: {place}"
    return True, f"in the next digest at position {rank} of {len(upcoming.capped)}"


def _window(store: Store, subscriber: Subscriber, settings: DigestConfig, now: datetime) -> Window:
    last = store.last_digest(subscriber.id)
    if last is None:
        return Window.of(None, settings.lookback_days, now)
    return Window.of(int(last["max_seq"]), settings.lookback_days, now, last["created_at"])
