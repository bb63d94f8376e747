"""Words and stems exactly as the store's FTS5 index sees them.

The filter language is evaluated in Python (to match many subscribers at once
and to say which terms matched), so Python must split and stem text the way
SQLite does.  Splitting is done here with a regular expression (a character
table for ASCII text) equivalent to ``unicode61`` (letters and digits are token
characters, diacritics removed, case folded); stemming is delegated to SQLite's
own ``porter`` tokenizer through a private in-memory FTS5 table, and cached, so
the stems are SQLite's by construction rather than by imitation.
"""

import re
import sqlite3
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

FTS_TOKENIZE = "porter unicode61 remove_diacritics 2"

_WORD = re.compile(r"[^\W_]+")
# A byte -> itself lowercased when an ASCII letter or digit, else a space (``words`` splits there).
_ASCII_WORDS = bytes(
    ord(c.lower()) if c.isascii() and c.isalnum() else 32 for c in map(chr, range(256))
)
_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def fold(text: str) -> str:
    """Case-fold and strip diacritics, as ``unicode61 remove_diacritics 2`` does."""
    if text.isascii():  # nothing to decompose or strip: most abstracts
        return text.lower()
    decomposed = unicodedata.normalize("NFD", text)
    return _COMBINING.sub("", decomposed).lower()


_SPELLED = str.maketrans(
    {
        "ł": "l",
        "ø": "o",
        "æ": "ae",
        "œ": "oe",
        "ß": "ss",
        "đ": "d",
        "ð": "d",
        "þ": "th",
        "ı": "i",
        "ħ": "h",
        "ŧ": "t",
        "ŋ": "n",
    }
)


def spelled(word: str) -> str:
    """A folded word with the letters that no accent-stripping takes apart (ł, ø, æ, ß …)
    spelled in plain Latin, as people type a name: ``author:lukasz`` finds Łukasz.

    For names only: the text fields must fold exactly as the FTS5 index does.
    """
    return word if word.isascii() else word.translate(_SPELLED)


def words(text: str) -> list[str]:
    """The folded words of ``text`` in order (unstemmed)."""
    if text.isascii():  # most abstracts: one table lookup per byte, 2-3x the regex's speed
        return text.encode("ascii").translate(_ASCII_WORDS).decode("ascii").split()
    return _WORD.findall(fold(text))


@dataclass(frozen=True, slots=True)
class Analysis:
    """One field of one document: its folded words and their stems, position by position."""

    words: tuple[str, ...]
    stems: tuple[str, ...]


class Stemmer:
    """Porter stems from SQLite itself, cached per word; safe to share between threads."""

    def __init__(self) -> None:
        self._conn = sqlite3.connect(":memory:", check_same_thread=False)
        self._lock = threading.Lock()
        self._conn.execute(f"CREATE VIRTUAL TABLE w USING fts5(word, tokenize='{FTS_TOKENIZE}')")
        self._conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(w, 'instance')")
        self._cache: dict[str, str] = {}

    def stems(self, folded_words: Iterable[str]) -> dict[str, str]:
        """Map each folded word to its stem, asking SQLite only for words not seen before."""
        wanted = set(folded_words)
        missing = [w for w in wanted if w not in self._cache]
        if missing:
            with self._lock:
                self._learn(missing)
        return {w: self._cache[w] for w in wanted}

    def stem(self, folded_word: str) -> str:
        return self.stems([folded_word])[folded_word]

    def analyze(self, text: str) -> Analysis:
        return self.analyze_many([text])[0]

    def analyze_many(self, texts: Iterable[str]) -> list[Analysis]:
        """Analyse many texts with one trip to SQLite for all their new words."""
        split = [words(text) for text in texts]
        table = self.stems(w for found in split for w in found)
        return [Analysis(tuple(found), tuple(table[w] for w in found)) for found in split]

    def _learn(self, missing: list[str]) -> None:
        with self._conn:
            self._conn.executemany(
                "INSERT INTO w(rowid, word) VALUES (?, ?)", enumerate(missing, start=1)
            )
            rows = self._conn.execute("SELECT doc, term FROM v ORDER BY doc, offset").fetchall()
            self._conn.execute("DELETE FROM w")
        learned: dict[int, str] = {}
        for doc, term in rows:
            learned.setdefault(doc, term)
        for index, word in enumerate(missing, start=1):
            self._cache[word] = learned.get(index, word)
