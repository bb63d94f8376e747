"""Generated dumps that look like the real ones, at any size, deterministically.

FTS5 cost depends on the text: how many tokens an abstract has, how long they
are and how many distinct terms the index accumulates.  So the generator does
not invent words: it recombines whole sentences of the real seed abstracts
(``examples/dumps/*.txt``), draws each abstract's target length from the seed
abstracts' lengths (471 to 1,920 characters, about 1.2 KB on average), and
gives each paper its own coined method name in place of the first acronym it
borrows, so the vocabulary keeps growing with the corpus as real
listings do (every paper names its method).  About one abstract in five ends
with a fresh ``https://github.com/...`` link, as in the seeds.  Titles are
seed titles with some words swapped, distinct after normalization, 15 to 137
characters, never ending with a period.

The dump is written line by line in the *packed* layout; only the set of
normalized titles (for distinctness) is kept in memory.
"""

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from digest.dumps import HEADER_PHRASES, parse
from digest.titles import normalize_title

SEED_DIR = Path(__file__).resolve().parent.parent / "examples" / "dumps"
HEADER = (
    "Get trending papers in your email inbox once a day!",
    "Get trending papers in your email inbox!",
)
PACKED_PREFIX = "Subscribe"
TITLE_MIN, TITLE_MAX = 15, 137
ABSTRACT_MIN, ABSTRACT_MAX = 471, 1920
LINK_SHARE = 0.19

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_ACRONYM = re.compile(r"\b[A-Z][A-Za-z]*[A-Z][A-Za-z0-9]*\b")
_LINK_PHRASES = (
    "Code is available at {url}.",
    "The source code is available at {url}.",
    "Our code and models are publicly available at {url}.",
    "Project page and code: {url}.",
    "Code: {{{url}}}.",
)
_CONSONANTS = "bcdfghklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True, slots=True)
class Corpus:
    """What the seeds offer to recombine."""

    sentences: tuple[str, ...]
    abstract_lengths: tuple[int, ...]
    titles: tuple[tuple[str, ...], ...]
    title_words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DumpInfo:
    path: Path
    entries: int
    bytes: int


def load_corpus(folder: Path = SEED_DIR) -> Corpus:
    """Sentences (without links), abstract lengths and title words of the seed dumps."""
    entries = [e for p in sorted(folder.glob("*.txt")) for e in parse(p.read_bytes()).entries]
    sentences = {s for e in entries for s in _SENTENCE_END.split(e.abstract) if "http" not in s}
    titles = {tuple(e.title.split()) for e in entries}
    return Corpus(
        sentences=tuple(sorted(sentences)),
        abstract_lengths=tuple(len(e.abstract) for e in entries),
        titles=tuple(sorted(titles)),
        title_words=tuple(sorted({w for t in titles for w in t})),
    )


class Generator:
    """Yields distinct (title, abstract) pairs; the same seed gives the same pairs."""

    def __init__(self, corpus: Corpus, seed: int) -> None:
        self.corpus = corpus
        self.rng = random.Random(seed)
        self._seen: set[str] = set()

    def entries(self, count: int) -> Iterator[tuple[str, str]]:
        for _ in range(count):
            name = self._coined_name()
            yield self._title(name), self._abstract(name)

    def _coined_name(self) -> str:
        rng = self.rng
        if rng.random() < 0.5:
            return "".join(rng.choices("ABCDEFGHIJKLMNOPRSTUVWXYZ", k=rng.randint(3, 6)))
        syllables = (
            rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.randint(2, 4))
        )
        return "".join(syllables).capitalize()

    def _title(self, name: str) -> str:
        while True:
            title = self._title_candidate(name)
            key = normalize_title(title)
            if _fits(title) and key not in self._seen:
                self._seen.add(key)
                return title

    def _title_candidate(self, name: str) -> str:
        rng, corpus = self.rng, self.corpus
        words = [
            rng.choice(corpus.title_words) if rng.random() < 0.3 else word
            for word in rng.choice(corpus.titles)
        ]
        title = " ".join(words).rstrip(".")
        return f"{name}: {title}" if rng.random() < 0.35 else title

    def _abstract(self, name: str) -> str:
        target = self.rng.choice(self.corpus.abstract_lengths)
        link = self._link() if self.rng.random() < LINK_SHARE else ""
        while True:
            text = self._compose(target - len(link), name)
            text = f"{text} {link}" if link else text
            if ABSTRACT_MIN <= len(text) <= ABSTRACT_MAX:
                return text

    def _compose(self, target: int, name: str) -> str:
        """Sentences until the length is as close to ``target`` as the next sentence allows."""
        parts: list[str] = []
        length = -1
        renames: dict[str, str] = {}
        while length < target:
            sentence = self._renamed(self.rng.choice(self.corpus.sentences), name, renames)
            if parts and length + 1 + len(sentence) - target > target - length:
                break
            parts.append(sentence)
            length += 1 + len(sentence)
        return " ".join(parts)

    def _renamed(self, sentence: str, name: str, renames: dict[str, str]) -> str:
        """The first acronym the paper borrows becomes its coined name; later ones stay."""

        def swap(match: re.Match[str]) -> str:
            word = match.group()
            if not renames:
                renames[word] = name
            return renames.get(word, word)

        return _ACRONYM.sub(swap, sentence)

    def _link(self) -> str:
        rng = self.rng
        user = self._coined_name().lower() + str(rng.randint(0, 99))
        repo = "-".join(w.lower() for w in rng.sample(self.corpus.title_words, 2))
        url = f"https://github.com/{user}/{re.sub(r'[^a-z0-9-]', '', repo) or 'code'}"
        return rng.choice(_LINK_PHRASES).format(url=url)


def _fits(title: str) -> bool:
    return TITLE_MIN <= len(title) <= TITLE_MAX and title not in HEADER_PHRASES


def write_dump(path: Path, entries: int, seed: int, corpus: Corpus | None = None) -> DumpInfo:
    """Stream a packed-layout dump of ``entries`` generated papers to ``path``."""
    return write_dumps([(path, entries)], seed, corpus)[0]


def write_dumps(
    parts: Sequence[tuple[Path, int]], seed: int, corpus: Corpus | None = None
) -> list[DumpInfo]:
    """Several dumps from one generator: no title repeats across them (all papers are new)."""
    generator = Generator(corpus or load_corpus(), seed)
    found = []
    for path, entries in parts:
        with path.open("w", encoding="utf-8", newline="\n") as out:
            out.write("\n".join(HEADER) + "\n" + PACKED_PREFIX)
            for title, abstract in generator.entries(entries):
                out.write(f"{title}\n{abstract}\n")
        found.append(DumpInfo(path, entries, path.stat().st_size))
    return found
