"""Highlighting: the spans of a paper's text that a filter's positive terms match.

Words and stems are found exactly as ``Corpus`` sees them, so what is highlighted is
what matched.  It runs for every paper of every digest, so it is built for speed.
"""

import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from itertools import accumulate

from digest.query.tree import Leaf, Node, Prefix, TextField, in_text, leaf_words, positive
from digest.stemming import Stemmer, fold, words

_TOKEN_CHARS = re.compile(r"[^\W_]+")  # stemming.words' token, applied to folded text
_NEXT_TOKEN = re.compile(r"[\W_]+([^\W_]+)")
# A token of the original text: letters and digits plus the combining marks folding drops.
_LOCATED = re.compile(
    r"(?:[^\W_]|[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f])+"
)
_ALIGNED: dict[str, bool] = {}  # non-ASCII character -> folds to exactly one character


def highlights(
    node: Node, text: str, stemmer: Stemmer, field: TextField | None = None
) -> list[tuple[int, int]]:
    """Sorted, disjoint character spans of ``text`` that satisfy a positive leaf of ``node``.

    A word whose stem equals a Term's, a word starting with a Prefix, and each run of
    words that a Phrase matches, with words and stems exactly as ``Corpus`` sees them.
    ``field`` names the field ``text`` belongs to: leaves restricted to another field
    are skipped (None applies every leaf of the text).  Author and category leaves are
    never applied: they match a paper's metadata, not words of its text.  It runs for
    every paper of every digest, so it finds candidate words with ``str.find`` instead
    of stemming every word of the text.
    """
    return highlighter(node, stemmer, field)(text)


def highlighter(
    node: Node, stemmer: Stemmer, field: TextField | None = None
) -> Callable[[str], list[tuple[int, int]]]:
    """``highlights`` of ``node`` for text after text (a digest's papers): the leaves that
    apply and the stems they need are found once, not once per text."""
    looks = [
        _look(leaf, stemmer)
        for leaf in dict.fromkeys(positive(node))
        if in_text(leaf) and (field is None or leaf.field in (None, field))
    ]

    def spans_of(text: str) -> list[tuple[int, int]]:
        return _highlights(looks, text, stemmer) if looks else []

    return spans_of


# What to look for of one leaf: a Prefix's prefix and no stems, or None and the stems
# of a Term's or Phrase's words.
_Look = tuple[str | None, tuple[str, ...]]


def _look(leaf: Leaf, stemmer: Stemmer) -> _Look:
    if isinstance(leaf, Prefix):
        return leaf.prefix, ()
    folded_words = leaf_words(leaf)
    table = stemmer.stems(folded_words)
    return None, tuple(table[word] for word in folded_words)


def _highlights(looks: list[_Look], text: str, stemmer: Stemmer) -> list[tuple[int, int]]:
    folded = _aligned_fold(text)
    if folded is not None:
        return _merged(_spans(looks, folded, stemmer))
    # Folding moved characters: match on the folded words joined by spaces, map back.
    located = [
        (word, m.start(), m.end()) for m in _LOCATED.finditer(text) for word in words(m.group())
    ]
    starts = list(accumulate((len(word) + 1 for word, _, _ in located), initial=0))
    return _merged(
        [
            (located[bisect_right(starts, a) - 1][1], located[bisect_right(starts, b - 1) - 1][2])
            for a, b in _spans(looks, " ".join(word for word, _, _ in located), stemmer)
        ]
    )


def _aligned_fold(text: str) -> str | None:
    """``stemming.fold(text)`` when it keeps every character in place, else None."""
    if text.isascii():
        return text.lower()
    chars = set(text)
    for char in chars - _ALIGNED.keys():
        _ALIGNED[char] = len(fold(char)) == 1
    return fold(text) if all(_ALIGNED[char] for char in chars) else None


def _spans(looks: list[_Look], folded: str, stemmer: Stemmer) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for prefix, stems in looks:
        if prefix is None:
            spans.extend(_stem_runs(folded, stems, stemmer))
        else:
            spans.extend(_tokens_starting(folded, prefix))
    return spans


def _tokens_starting(folded: str, prefix: str) -> Iterator[tuple[int, int]]:
    """The span of each token of ``folded`` that starts with ``prefix`` (every token if empty)."""
    if not prefix:
        yield from (m.span() for m in _TOKEN_CHARS.finditer(folded))
        return
    at = folded.find(prefix)
    while at >= 0:
        end = at + len(prefix)  # the prefix is letters and digits: no token starts inside
        if at == 0 or not folded[at - 1].isalnum():
            token = _TOKEN_CHARS.match(folded, end)
            end = token.end() if token else end
            yield at, end
        at = folded.find(prefix, end)


def _stem_runs(folded: str, stems: tuple[str, ...], stemmer: Stemmer) -> Iterator[tuple[int, int]]:
    """Each run of consecutive tokens whose stems are ``stems``.

    Porter rewrites at most the last two characters of what it keeps, so a word whose
    stem is ``s`` starts with ``s[:-2]``: only the tokens starting so are stemmed.
    """
    for start, end in _tokens_starting(folded, stems[0][:-2]):
        if stemmer.stem(folded[start:end]) != stems[0]:
            continue
        for stem in stems[1:]:
            after = _NEXT_TOKEN.match(folded, end)
            if after is None or stemmer.stem(after.group(1)) != stem:
                break
            end = after.end()
        else:
            yield start, end


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
