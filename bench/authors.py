"""Authors and categories for the match stage's author-filter workload (issue 14).

Papers: each new paper gets 3–12 authors and 1–3 arXiv categories, as a source
(``store.add_dump(source="hf")``) would give them.  The authors come from a pool
of ``POOL`` generated "First Last" names (first names and surnames of many
origins, some accented: Łukasz, Søren, Müller, Özdemir, du Châtelet), with
common surnames (Wang, Li, Kim, Müller) shared by many people, as in real author
lists.  Who writes which paper follows a Zipf–Mandelbrot law over the pool
(weight of the k-th name ``1 / (k + ZIPF_OFFSET)``): at 1,000 papers the most
prolific author is on a few dozen papers, and most names on one or two.  The
categories are ``CATEGORIES`` (40 real codes), the common ones (cs.LG, cs.CL,
cs.CV) far more often.

Filters: ``AuthorFilterMaker`` draws exactly the words and shapes that
``FilterMaker`` draws for the same seed (same random stream), then replaces one
positive term of each filter with an ``author:`` term, and in a share of the
filters with two terms or more another term with a ``category:`` term.  So
author filter *n* is word filter *n* with one (or two) terms swapped: the same
mix of one to four terms, phrases, prefixes, OR, NOT and ``title:``.  The
author is that of a random new paper (popular authors get more subscribers, as
popular words do), written as people type it: a surname (``author:lecun``,
sometimes as printed, ``author:Châtelet``), a quoted full name
(``author:"Yann LeCun"``) or a surname prefix (``author:lec*``).  Deterministic
for a seed.
"""

import hashlib
import random
from collections.abc import Sequence
from datetime import datetime
from itertools import accumulate

from bench import BenchError
from bench.dumpgen import DumpInfo
from bench.workload import FilterMaker
from digest.dumps import parse
from digest.models import Entry, PaperMeta
from digest.stemming import fold, spelled
from digest.store import Store

POOL = 3_000
ZIPF_OFFSET = 100  # flattens the head: the top author is on ~2% of the papers, not 80%
AUTHORS = (3, 12)
CATEGORY_COUNTS, CATEGORY_COUNT_WEIGHTS = (1, 2, 3), (45, 35, 20)
AUTHOR_KINDS, AUTHOR_KIND_WEIGHTS = ("surname", "name", "prefix"), (50, 30, 20)
CATEGORY_SHARE = 0.3  # of filters with two terms or more
AS_PRINTED = 0.3  # surnames typed with their capitals and accents, not folded
ARCHIVE_SHARE = 0.15  # category terms naming a whole archive (category:cs.*)

_FIRST = """
    Yann Yoshua Geoffrey Fei-Fei Andrew Ilya Oriol Quoc Samy Kyunghyun Percy Christopher
    Dan Emily Timnit Margaret Jeff Sanjay Noam Ashish Niki Jakob Llion Aidan Łukasz Illia
    Tomáš Jürgen Sepp Zoë Søren Ingrid Åsa Björn Mikael Anders Jörg Günter Bernhard Ulrike
    Matthias Stefanie Élodie François Amélie Théo Inès Hélène Jérôme Gaël Chloé Renée
    José María Lucía Andrés Raúl Sofía João Conceição Gonçalo Inês Álvaro Marta Pietro
    Giulia Matteo Chiara Luca Francesca Alessandro Wei Jing Hao Yu Xin Li Ming Jun Lei Yan
    Hiroshi Yuki Takashi Haruka Kenji Sakura Min-jun Ji-woo Seo-yeon Hyun Priya Arjun Ananya
    Rahul Deepa Vikram Ayşe Mehmet Elif Zeynep Ahmed Fatima Omar Layla Youssef Amira Olga
    Dmitri Natalia Sergei Katarzyna Piotr Agnieszka Michał Zuzana Ondřej Dóra Ádám Bence
    Nguyễn Linh Minh Thảo Kwame Ama Chidi Ngozi Tendai Sipho Ana Ivan Nikola Jelena Sean
    Aoife Siobhán Ciarán Eoin Sarah David Michael Laura James Anna Thomas Maria Robert
"""
_LAST = """
    Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo Lin He Gao Luo
    Kim Lee Park Choi Jung Kang Cho Yoon Jang Lim Nguyen Tran Pham Hoang Phan Vu Dang Bui
    Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura Kobayashi Kato Sharma Patel
    Singh Kumar Gupta Reddy Iyer Nair Rao Chatterjee Banerjee Mukherjee Das Bose Müller
    Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer
    Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann Hartmann
    Lange Jäger Köhler Günther Scholz Dupont Martin Bernard Dubois Thomas Robert Richard
    Petit Durand Leroy Moreau Simon Laurent Lefèvre Michel García Fernández González
    Rodríguez López Martínez Sánchez Pérez Gómez Díaz Álvarez Muñoz Jiménez Ruiz Hernández
    Silva Santos Oliveira Souza Pereira Costa Rodrigues Almeida Gonçalves Araújo Rossi
    Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Conti Gallo Nowak
    Kowalski Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński Dvořák Novák
    Svoboda Černý Procházka Kučera Horváth Nagy Szabó Tóth Kovács Varga Yılmaz Kaya Demir
    Şahin Çelik Özdemir Aydın Arslan Doğan Ivanov Smirnov Kuznetsov Popov Sokolov Petrov
    Volkov Hansen Johansen Nielsen Jensen Pedersen Andersen Larsen Sørensen Jørgensen
    Lindqvist Åberg Ström Nyström Holmberg Virtanen Mäkinen Nieminen Smith Johnson Williams
    Brown Jones Miller Davis Wilson Anderson Taylor Moore Jackson White Harris Clark Lewis
    Walker Young Allen King Wright Scott Green Baker Adams Nelson Hill Campbell Mitchell
    Roberts Carter Phillips Evans Turner Torres Parker Collins Edwards Stewart Murphy Cook
    Rogers Morgan Cooper Peterson Reed Bailey Kelly Howard Ward Cox Richardson Wood Brooks
    Okafor Mensah Adeyemi Okonkwo Abubakar Haddad Mansour Khalil Nasser Rahman Hussain Khan
    Cohen Levi Mizrahi Friedman Katz LeCun Bengio Hinton Sutskever Vaswani Shazeer Parmar
    Uszkoreit Goodfellow Schmidhuber Hochreiter Schölkopf Karpathy Hassabis
"""
_PARTICLES = ("du Châtelet", "van der Berg", "de la Cruz", "van Dijk", "de Souza", "von Neumann")


def name_pool(rng: random.Random, size: int = POOL) -> list[str]:
    """``size`` distinct "First Last" names, in a random order (their popularity rank).

    Surnames are drawn Zipf-like too, so that a few (Wang, Li …) belong to many
    people and ``author:wang`` finds many papers, as it would.
    """
    first, last = _FIRST.split(), [*_LAST.split(), *_PARTICLES]
    surname_weights = list(accumulate(1 / (k + 5) for k in range(len(last))))
    names: dict[str, None] = {}
    while len(names) < size:
        surname = rng.choices(last, cum_weights=surname_weights)[0]
        names[f"{rng.choice(first)} {surname}"] = None
    pool = list(names)
    rng.shuffle(pool)
    return pool


def paper_meta(count: int, seed: int) -> list[PaperMeta]:
    """Authors, categories and an arXiv id for ``count`` papers (deterministic for a seed)."""
    rng = random.Random(seed * 7 + 14)
    pool = name_pool(rng)
    author_weights = list(accumulate(1 / (k + ZIPF_OFFSET) for k in range(len(pool))))
    category_weights = list(accumulate(1 / (k + 2) for k in range(len(CATEGORIES))))
    made = []
    for n in range(count):
        authors = _distinct(rng, pool, author_weights, rng.randint(*AUTHORS))
        wanted = rng.choices(CATEGORY_COUNTS, weights=CATEGORY_COUNT_WEIGHTS)[0]
        categories = _distinct(rng, CATEGORIES, category_weights, wanted)
        made.append(PaperMeta(arxiv_id=f"2611.{n + 1:05d}", authors=authors, categories=categories))
    return made


def _distinct(
    rng: random.Random, values: Sequence[str], cum_weights: list[float], count: int
) -> tuple[str, ...]:
    found: dict[str, None] = {}
    while len(found) < count:
        found[rng.choices(values, cum_weights=cum_weights)[0]] = None
    return tuple(found)


def describe(metas: Sequence[PaperMeta]) -> str:
    """How the authors are spread: names used, the busiest author's papers, one-paper names."""
    papers: dict[str, int] = {}
    for meta in metas:
        for author in meta.authors:
            papers[author] = papers.get(author, 0) + 1
    once = sum(1 for n in papers.values() if n == 1)
    top = max(papers.values(), default=0)
    slots = sum(papers.values())
    return (
        f"{slots:,} author slots over {len(papers):,} names, the busiest on {top} papers, "
        f"{once:,} on one"
    )


class AuthorFilterMaker(FilterMaker):
    """``FilterMaker``'s filters with one positive term an ``author:`` term, some with a
    ``category:`` term too; the authors and categories are the new papers' (``metas``)."""

    def __init__(
        self, papers: Sequence[tuple[str, str]], metas: Sequence[PaperMeta], seed: int
    ) -> None:
        super().__init__(papers, seed)
        self.swaps = random.Random(seed + 1)  # apart, so ``self.rng`` draws the word filters'
        self.metas = [m for m in metas if m.authors]
        if not self.metas:
            raise ValueError("no papers with authors to draw author filters from")

    def joined(self, parts: list[str], negation: str | None) -> str:
        swaps = self.swaps
        at = swaps.randrange(len(parts))
        parts[at] = _swap_first(parts[at], self.author())
        if (negation is not None or len(parts) > 1) and swaps.random() < CATEGORY_SHARE:
            others = [i for i in range(len(parts)) if i != at]
            if others:
                i = swaps.choice(others)
                parts[i] = _swap_first(parts[i], self.category())
            else:
                negation = f"-{self.category()}"
        return super().joined(parts, negation)

    def author(self) -> str:
        swaps = self.swaps
        name = swaps.choice(swaps.choice(self.metas).authors)
        surname = name.split()[-1]
        typed = spelled(fold(surname))
        kind = swaps.choices(AUTHOR_KINDS, weights=AUTHOR_KIND_WEIGHTS)[0]
        if kind == "name":
            return f'author:"{name}"'
        if kind == "prefix" and len(typed) >= 5:
            return f"author:{typed[: swaps.randint(3, len(typed) - 2)]}*"
        return f"author:{surname if swaps.random() < AS_PRINTED else typed}"

    def category(self) -> str:
        swaps = self.swaps
        code = swaps.choice(swaps.choice(self.metas).categories)
        if "." in code and swaps.random() < ARCHIVE_SHARE:
            return f"category:{code.split('.')[0]}.*"
        return f"category:{code}"


def _swap_first(term: str, replacement: str) -> str:
    """``term`` with its first word, phrase or prefix replaced; in an OR pair only the
    first alternative is (``(author:x OR word)``), so the shape stays."""
    if " OR " in term:
        alternatives = term.strip("()").split(" OR ")
        swapped = f"{replacement} OR {' OR '.join(alternatives[1:])}"
        return f"({swapped})" if term.startswith("(") else swapped
    return replacement


CATEGORIES = (
    "cs.LG",
    "cs.CL",
    "cs.CV",
    "cs.AI",
    "stat.ML",
    "cs.RO",
    "cs.IR",
    "cs.NE",
    "cs.CR",
    "cs.HC",
    "cs.SE",
    "cs.DC",
    "cs.SD",
    "eess.AS",
    "eess.IV",
    "eess.SP",
    "cs.MA",
    "cs.GR",
    "cs.DB",
    "cs.DS",
    "cs.PL",
    "cs.SI",
    "cs.CY",
    "cs.GT",
    "cs.IT",
    "math.OC",
    "math.ST",
    "math.NA",
    "math.PR",
    "q-bio.NC",
    "q-bio.QM",
    "physics.comp-ph",
    "physics.data-an",
    "cond-mat.dis-nn",
    "quant-ph",
    "astro-ph.IM",
    "econ.EM",
    "q-fin.CP",
    "cs.MM",
    "cs.AR",
)


def ingest_listed(store: Store, dump: DumpInfo, now: datetime, seed: int) -> list[PaperMeta]:
    """The dump's papers stored as a source lists them, each with generated authors and
    categories (the same titles and abstracts as ``bench.workload.ingest`` would store)."""
    content = dump.path.read_bytes()
    entries = parse(content, dump.path.name).entries
    metas = paper_meta(len(entries), seed)
    listed = [
        Entry.of(e.position, e.title, e.abstract, e.line, m)
        for e, m in zip(entries, metas, strict=True)
    ]
    with store.write():
        dump_id = store.add_dump(
            dump.path.name, hashlib.sha256(content).hexdigest(), now, source="hf"
        )
        counts = store.add_entries(dump_id, [listed], now)
        store.finish_dump(dump_id, now.date().isoformat(), counts)
    if counts.new != dump.entries:
        raise BenchError(
            f"listing {dump.path.name}: {counts.new:,} new papers, not {dump.entries:,}"
        )
    return metas
