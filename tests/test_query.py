"""The filter language, specified by tables over the five real seed dumps, and over
papers whose sources gave authors and categories."""

import re
import sqlite3
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.dumps import parse as parse_dump
from digest.errors import QueryError
from digest.models import Entry, PaperMeta, PaperRow
from digest.query import (
    FIELDS,
    META_FIELDS,
    And,
    Corpus,
    Document,
    Explanation,
    Focus,
    Leaf,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Term,
    TextField,
    highlighter,
    highlights,
    leaf_count,
    members,
    parse,
    terms,
    to_fts5,
)
from digest.stemming import FTS_TOKENIZE, Analysis, Stemmer, fold, spelled, words
from digest.store import Store
from digest.windows import documents

from .conftest import NOW, examples, from_source

DUMPS = Path(__file__).resolve().parent.parent / "examples" / "dumps"


def seed_papers() -> list[tuple[str, str]]:
    """Distinct (title, abstract) pairs of the seed dumps, in first-seen order."""
    papers: dict[str, str] = {}
    for path in sorted(DUMPS.glob("*.txt")):
        for entry in parse_dump(path.read_bytes(), path.name).entries:
            papers.setdefault(entry.title, entry.abstract)
    return list(papers.items())


PAPERS = seed_papers()
TITLES = [title for title, _ in PAPERS]
DOCUMENTS = [Document(title, abstract) for title, abstract in PAPERS]
STEMMER = Stemmer()
ANALYSES = [(STEMMER.analyze(t), STEMMER.analyze(a)) for t, a in PAPERS]

ALPHA = "Iterative α-(de)Blending: a Minimalist Deterministic Diffusion Model"
BETA = "ADOPT: Modified Adam Can Converge with Any β_2 with the Optimal Rate"
EPSILON = "ε-shotgun: ε-greedy Batch Bayesian Optimisation"
LOJASIEWICZ = (
    "From Optimization Dynamics to Generalization Bounds via Łojasiewicz Gradient Inequality"
)
I2V = "Identifying and Solving Conditional Image Leakage in Image-to-Video Diffusion Model"
MUSIC = "Language-Guided Music Recommendation for Video via Prompt Analogies"
GOLDEN = "Golden Noise for Diffusion Models: A Learning Framework"
CREAM = "CREAM: Consistency Regularized Self-Rewarding Language Models"
RL_VIDEOS = "Towards Principled Representation Learning from Videos for Reinforcement Learning"
SGD_REG = "SGD Implicitly Regularizes Generalization Error"
NOT_NECESSARY = "Stochastic Training is Not Necessary for Generalization"
FOURIER = "Choose a Transformer: Fourier or Galerkin"
WTA = "Winner-Take-All Column Row Sampling for Memory Efficient Adaptation of Language Model"
WGAN = "Wasserstein GAN"


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus(STEMMER, DOCUMENTS)


@pytest.fixture(scope="module")
def fts() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE VIRTUAL TABLE p USING fts5(title, abstract, tokenize='{FTS_TOKENIZE}')")
    conn.executemany(
        "INSERT INTO p(rowid, title, abstract) VALUES (?, ?, ?)",
        [(i + 1, t, a) for i, (t, a) in enumerate(PAPERS)],
    )
    yield conn
    conn.close()


def show(node: Node) -> str:
    """A compact, unambiguous rendering of a tree for the tables below."""
    match node:
        case Term(word, field, _):
            return f"{field}:{word}" if field else word
        case Phrase(words, field, _):
            return f'{field}:"{" ".join(words)}"' if field else f'"{" ".join(words)}"'
        case Prefix(prefix, field, _):
            return f"{field}:{prefix}*" if field else f"{prefix}*"
        case And(children) | Or(children):
            name = "AND" if isinstance(node, And) else "OR"
            return f"({name} {' '.join(map(show, children))})"
        case Not(child):
            return f"(NOT {show(child)})"
    raise AssertionError(node)


def selected(corpus: Corpus, query: str) -> set[str]:
    bits = corpus.evaluate(parse(query))
    return {title for i, title in enumerate(TITLES) if bits >> i & 1}


def naive(node: Node) -> list[bool]:
    """An independent oracle: the documented semantics checked paper by paper, no index."""
    match node:
        case And(children):
            return [all(row) for row in zip(*map(naive, children), strict=True)]
        case Or(children):
            return [any(row) for row in zip(*map(naive, children), strict=True)]
        case Not(child):
            return [not hit for hit in naive(child)]
    assert isinstance(node, Term | Phrase | Prefix)
    return list(naive_leaf(node))


@cache
def naive_leaf(leaf: Term | Phrase | Prefix) -> tuple[bool, ...]:
    if leaf.field in META_FIELDS:
        return tuple(naive_meta(leaf, doc) for doc in DOCUMENTS)
    if isinstance(leaf, Prefix):
        return tuple(
            any(w.startswith(leaf.prefix) for f in fields for w in f.words)
            for fields in in_field(leaf)
        )
    wanted = tuple(
        STEMMER.stem(w) for w in (leaf.words if isinstance(leaf, Phrase) else [leaf.word])
    )
    return tuple(any(contains(f.stems, wanted) for f in fields) for fields in in_field(leaf))


def in_field(leaf: Term | Phrase | Prefix) -> list[tuple[Analysis, ...]]:
    picks = {None: (0, 1), "title": (0,), "abstract": (1,)}[leaf.field]
    return [tuple(doc[k] for k in picks) for doc in ANALYSES]


def naive_meta(leaf: Leaf, doc: Document) -> bool:
    """The documented meaning of an author or category leaf, one value at a time:
    an author's name as its folded words (unstemmed, Ł spelled L), a category whole and
    folded."""
    if leaf.field == "author":
        values = [tuple(spelled(w) for w in words(name)) for name in doc.authors]
    else:
        values = [(fold(code),) for code in doc.categories]
    if isinstance(leaf, Prefix):
        return any(w.startswith(spelled(leaf.prefix)) for value in values for w in value)
    wanted = tuple(map(spelled, leaf.words if isinstance(leaf, Phrase) else (leaf.word,)))
    return any(contains(value, wanted) for value in values)


def contains(stems: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    if wanted[0] not in stems:
        return False
    n = len(wanted)
    return any(stems[j : j + n] == wanted for j in range(len(stems) - n + 1))


def bools(bits: int) -> list[bool]:
    return [bool(bits >> i & 1) for i in range(len(PAPERS))]


def exact_in_fts5(node: Node) -> bool:
    """No prefix and no negation: the FTS5 prefilter is then the exact answer."""
    match node:
        case And(children) | Or(children):
            return all(map(exact_in_fts5, children))
        case Prefix() | Not():
            return False
        case Term(field=field) | Phrase(field=field) if field in META_FIELDS:
            return False  # not in the FTS5 index: the prefilter lets everything through
    return True


def test_seed_papers_are_the_689_distinct_papers() -> None:
    assert len(PAPERS) == 689
    assert {ALPHA, BETA, EPSILON, LOJASIEWICZ} <= set(TITLES)


# --- grammar -----------------------------------------------------------------------------

PARSES = [
    ("agents", "agents"),
    ("Agents", "agents"),
    ("ÉTUDE", "etude"),
    ('"Exact   Phrase"', '"exact phrase"'),
    ('"agents"', "agents"),
    ("regulari*", "regulari*"),
    ("Regulari*", "regulari*"),
    ("a b", "(AND a b)"),
    ("a AND b", "(AND a b)"),
    ("a\tb\nc", "(AND a b c)"),
    ("a OR b", "(OR a b)"),
    ("a b OR c", "(OR (AND a b) c)"),
    ("a OR b c", "(OR a (AND b c))"),
    ("a AND b OR c AND d", "(OR (AND a b) (AND c d))"),
    ("a (b OR c)", "(AND a (OR b c))"),
    ("(a b) c", "(AND a b c)"),
    ("a OR (b OR c)", "(OR a b c)"),
    ("((a))", "a"),
    ("b NOT a", "(AND b (NOT a))"),
    ("NOT a b", "(AND (NOT a) b)"),
    ("a -b", "(AND a (NOT b))"),
    ('a -"b c"', '(AND a (NOT "b c"))'),
    ("a -(b OR c)", "(AND a (NOT (OR b c)))"),
    ("a NOT NOT b", "(AND a b)"),
    ("a OR -b", "(OR a (NOT b))"),
    ("(a)-b", "(AND a (NOT b))"),
    ("title:a", "title:a"),
    ('title:"a b"', 'title:"a b"'),
    ("abstract:pre*", "abstract:pre*"),
    ("title:(a OR b) c", "(AND (OR title:a title:b) c)"),
    ("title:(a -b)", "(AND title:a (NOT title:b))"),
    ('abstract:(x "y z" pre*)', '(AND abstract:x abstract:"y z" abstract:pre*)'),
    ("-title:a b", "(AND (NOT title:a) b)"),
    ("title:-a b", "(AND (NOT title:a) b)"),
    ("title:(title:a b)", "(AND title:a title:b)"),
    ("LLM-as-a-judge", '"llm as a judge"'),
    ("GPT-4", '"gpt 4"'),
    ("2.7", '"2 7"'),
    ("don't", '"don t"'),
    ("snake_case", '"snake case"'),
    ("co-op", '"co op"'),
    ("and or not", "(AND and or not)"),
    ("a Or b", "(AND a or b)"),
    ("nearby near", "(AND nearby near)"),
    ("ε-greedy", '"ε greedy"'),
    ("Ε", "ε"),
    ("ŁOJASIEWICZ", "łojasiewicz"),
    ('"a""b"', "(AND a b)"),
    ("author:lecun", "author:lecun"),
    ("author:LeCun", "author:lecun"),
    ('author:"Yann LeCun"', 'author:"yann lecun"'),
    ("author:lec*", "author:lec*"),
    ("author:Châtelet", "author:chatelet"),
    ("author:Jean-Pierre", 'author:"jean pierre"'),
    ("author:(lecun OR hinton)", "(OR author:lecun author:hinton)"),
    ("author:(lecun -hinton)", "(AND author:lecun (NOT author:hinton))"),
    ("author:Yann LeCun", "(AND author:yann lecun)"),
    ("category:cs.CL", "category:cs.cl"),
    ("category:CS.cl", "category:cs.cl"),
    ("category:cs.*", "category:cs.*"),
    ("category:cs*", "category:cs*"),
    ("category:hep-th", "category:hep-th"),
    ("category:cond-mat.stat-mech", "category:cond-mat.stat-mech"),
    ("category:2.7", "category:2.7"),
    ("category:(cs.CL OR cs.LG)", "(OR category:cs.cl category:cs.lg)"),
    ("category:(cs.CL -cs.CV)", "(AND category:cs.cl (NOT category:cs.cv))"),
    ("category:((cs.CL) OR (stat.ML))", "(OR category:cs.cl category:stat.ml)"),
    ("category:-cs.CV x", "(AND (NOT category:cs.cv) x)"),
    ("-category:cs.CV x", "(AND (NOT category:cs.cv) x)"),
    ("category:cs.CL cs.CL", '(AND category:cs.cl "cs cl")'),
    ("category:(cs.CL) cs.CL", '(AND category:cs.cl "cs cl")'),
    ("diffusion author:lecun -category:cs.CV", "(AND diffusion author:lecun (NOT category:cs.cv))"),
    ("author:x category:cs.LG title:y", "(AND author:x category:cs.lg title:y)"),
    ("author:(author:x y)", "(AND author:x author:y)"),
]


@pytest.mark.parametrize(("query", "tree"), PARSES)
def test_parse(query: str, tree: str) -> None:
    assert show(parse(query)) == tree


@given(
    st.lists(st.sampled_from(["a", "Bb", "c3", "AND", "OR", "NOT", "NEAR", "or", "é"]), min_size=1)
)
@settings(derandomize=True, database=None)
def test_plain_words_mean_the_same_with_or_without_a_group(chunks: list[str]) -> None:
    """``parse`` takes a shortcut for plain words; a group forces the general path."""
    plain, grouped = outcome(" ".join(chunks)), outcome(f"({' '.join(chunks)})")
    if isinstance(plain, QueryError):
        assert isinstance(grouped, QueryError)
        assert plain.reason == grouped.reason
    else:
        assert plain == grouped


def test_leaves_keep_the_text_as_written() -> None:
    assert parse('title:"Video  Generation"') == Phrase(
        ("video", "generation"), "title", '"Video  Generation"'
    )
    assert parse("Regulari*") == Prefix("regulari", None, "Regulari*")
    assert parse("GPT-4") == Phrase(("gpt", "4"), None, "GPT-4")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("diffusion agents", ["diffusion", "agents"]),
        ('title:"Video Generation" -survey OR GPT-4', ['"Video Generation"', "GPT-4"]),
        ("a a A", ["a", "A"]),
        ("regulari* NOT (x OR y)", ["regulari*"]),
        ("ε-greedy Łojasiewicz", ["ε-greedy", "Łojasiewicz"]),
        (
            'diffusion author:"Yann LeCun" -category:cs.CV',
            ["diffusion", 'author:"Yann LeCun"'],
        ),
        (
            "category:(cs.CL OR cs.*) author:(lec* -x)",
            ["category:cs.CL", "category:cs.*", "author:lec*"],
        ),
    ],
)
def test_terms_are_positive_leaves_as_written(query: str, expected: list[str]) -> None:
    assert terms(parse(query)) == expected


UNKNOWN_FIELD = "':' is only allowed after title, abstract, author or category"
CATEGORY = "not a category: write one as arXiv does (cs.CL, hep-th) or a prefix (cs.*)"
NEGATION_ONLY = "a filter must include at least one term"
DEEP = "too deeply nested: at most 32 levels of (), NOT, - and fields"
ERRORS = [
    ("", 0, "empty filter: write at least one word"),
    ("   ", 0, "empty filter: write at least one word"),
    ("-video", 0, "a filter must include at least one term"),
    ("  -video", 2, "a filter must include at least one term"),
    ("NOT a NOT b", 0, "a filter must include at least one term"),
    ("-(a OR b)", 0, "a filter must include at least one term"),
    ("-a OR -b", 0, "a filter must include at least one term"),
    ("title:-x", 0, "a filter must include at least one term"),
    ("a NEAR b", 2, 'NEAR is not supported; use a "phrase"'),
    ("NEAR(a b)", 0, 'NEAR is not supported; use a "phrase"'),
    ("a NEAR/3 b", 2, 'NEAR is not supported; use a "phrase"'),
    ("x ^y", 2, "'^' is not supported; juxtapose words for AND, use OR, NOT or -"),
    ("a +b", 2, "'+' is not supported; juxtapose words for AND, use OR, NOT or -"),
    ("c++", 1, "'+' is not supported; juxtapose words for AND, use OR, NOT or -"),
    ("*", 0, "'*' must end a word, as in prefix*"),
    ("a * b", 2, "'*' must end a word, as in prefix*"),
    ("a*b", 1, "'*' must end a word, as in prefix*"),
    ("ab**", 2, "'*' must end a word, as in prefix*"),
    ('"ab"*', 4, "'*' must end a word, as in prefix*"),
    ("(ab)*", 4, "'*' must end a word, as in prefix*"),
    ("co-*", 3, "'*' must end a word, as in prefix*"),
    ("a*", 0, "a prefix needs at least 2 characters before '*'"),
    ("x é*", 2, "a prefix needs at least 2 characters before '*'"),
    ("co-o*", 0, "a prefix must be a single word"),
    ("state-of-the-art*", 0, "a prefix must be a single word"),
    ("foo:bar", 3, UNKNOWN_FIELD),
    ("Title:bar", 5, UNKNOWN_FIELD),
    ("a :b", 2, UNKNOWN_FIELD),
    ("see https://x.org", 9, UNKNOWN_FIELD),
    ("title: x", 0, 'title: must be directly followed by a word, a "phrase" or a (group)'),
    ("x abstract:", 2, 'abstract: must be directly followed by a word, a "phrase" or a (group)'),
    ("title:OR x", 0, 'title: must be directly followed by a word, a "phrase" or a (group)'),
    ("(title:)", 1, 'title: must be directly followed by a word, a "phrase" or a (group)'),
    ("title:(abstract:x)", 7, "abstract: cannot be used inside title:"),
    ("abstract:(a title:b)", 12, "title: cannot be used inside abstract:"),
    ("a - b", 2, "'-' must be directly followed by a word, a \"phrase\" or a (group)"),
    ("a -", 2, "'-' must be directly followed by a word, a \"phrase\" or a (group)"),
    ("--", 0, "'-' must be directly followed by a word, a \"phrase\" or a (group)"),
    ("a --b", 2, "'-' must be directly followed by a word, a \"phrase\" or a (group)"),
    ("a -OR b", 2, "'-' must be directly followed by a word, a \"phrase\" or a (group)"),
    ('say "hello', 4, 'unclosed quote: add a closing "'),
    ('"a" "b', 4, 'unclosed quote: add a closing "'),
    ('a ""', 2, 'a "phrase" must contain at least one word'),
    ('a "-- ..."', 2, 'a "phrase" must contain at least one word'),
    ("(a (b)", 0, "unclosed '(': add a closing ')'"),
    ("a (b", 2, "unclosed '(': add a closing ')'"),
    ("a) b", 1, "unmatched ')'"),
    ("a ()", 2, "empty group '()'"),
    ("a (  )", 2, "empty group '()'"),
    ("§", 0, "'§' contains no letters or digits"),
    ("a ... b", 2, "'...' contains no letters or digits"),
    ("a OR", 2, "OR needs a term on each side"),
    ("OR a", 0, "OR needs a term on each side"),
    ("a OR OR b", 5, "OR needs a term on each side"),
    ("(a OR) b", 3, "OR needs a term on each side"),
    ("a AND", 2, "AND needs a term on each side"),
    ("AND a", 0, "AND needs a term on each side"),
    ("a AND OR b", 6, "OR needs a term on each side"),
    ("NOT", 0, "NOT must be followed by a term"),
    ("a NOT", 2, "NOT must be followed by a term"),
    ("a NOT OR b", 2, "NOT must be followed by a term"),
    ("(a NOT)", 3, "NOT must be followed by a term"),
    ("(" * 33 + "a" + ")" * 33, 32, DEEP),
    ("a " + "NOT " * 33 + "b", 130, DEEP),
    ("title:" + "(" * 40 + "a" + ")" * 40, 37, DEEP),
    ("Author:x", 6, UNKNOWN_FIELD),
    ("authors:x", 7, UNKNOWN_FIELD),
    ("author: x", 0, 'author: must be directly followed by a word, a "phrase" or a (group)'),
    (
        "category: cs.CL",
        0,
        'category: must be directly followed by a word, a "phrase" or a (group)',
    ),
    ("title:(author:x)", 7, "author: cannot be used inside title:"),
    ("author:(a category:cs.CL)", 10, "category: cannot be used inside author:"),
    ("category:(title:x)", 10, "title: cannot be used inside category:"),
    ("abstract:(x OR (author:y))", 16, "author: cannot be used inside abstract:"),
    ("-author:x", 0, NEGATION_ONLY),
    ("-category:cs.CV", 0, NEGATION_ONLY),
    ("category:(-cs.CV)", 0, NEGATION_ONLY),
    ("author:a*", 7, "a prefix needs at least 2 characters before '*'"),
    ("author:yann-lec*", 7, "a prefix must be a single word"),
    ("category:c*", 9, "a prefix needs at least 2 characters before '*'"),
    ("category:cs.*x", 12, "'*' must end a word, as in prefix*"),
    ("category:*", 9, "'*' must end a word, as in prefix*"),
    ("category:cs_CL", 11, CATEGORY),
    ("category:cś.CL", 10, CATEGORY),
    ("category:.cs", 9, CATEGORY),
    ("x category:(cs.CL OR c+s)", 22, CATEGORY),
    ('category:"cs.CL"', 9, "write a category without quotes, as in category:cs.CL"),
    ("category:(cs.CL NEAR cs.LG)", 16, 'NEAR is not supported; use a "phrase"'),
    ("category:--cs", 9, "'-' must be directly followed by a word, a \"phrase\" or a (group)"),
    ("category:cs.CL:x", 14, UNKNOWN_FIELD),
    ("category:(cs.CL", 9, "unclosed '(': add a closing ')'"),
    ("category:(cs.CL OR)", 16, "OR needs a term on each side"),
]


def test_deep_nesting_within_the_limit_is_fine() -> None:
    assert show(parse("(" * 31 + "a b" + ")" * 31)) == "(AND a b)"
    assert show(parse("a " + "NOT " * 32 + "b")) == "(AND a b)"


@pytest.mark.parametrize(("query", "column", "reason"), ERRORS)
def test_bad_query_is_one_line_with_a_caret(query: str, column: int, reason: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse(query)
    error = caught.value
    assert (error.reason, error.column, error.exit_code) == (reason, column, 2)
    assert (
        str(error) == f"bad filter at column {column + 1}: {reason}\n  {query}\n  {' ' * column}^"
    )


# --- semantics on the seeds --------------------------------------------------------------

SAME_SELECTION = [
    ("agents", "agent"),
    ("models", "model"),
    ("Models", "MODELS"),
    ("title:gans", "title:GAN"),
    ('"diffusion models"', '"Diffusion Model"'),
    ("video diffusion", "video AND diffusion"),
    ("video diffusion", "diffusion video"),
    ("title:video diffusion OR title:gan", "(title:video diffusion) OR title:gan"),
    ("title:(video OR videos)", "title:video OR title:videos"),
    ("title:(video diffusion)", "title:video title:diffusion"),
    ("title:image-to-video", 'title:"image to video"'),
    ("LLM-as-a-judge", '"llm as a judge"'),
    ("video -diffusion", "video NOT diffusion"),
    ("-diffusion video", "video -diffusion"),
    ("NOT NOT video", "video"),
    ("Ε", "ε"),
    ("ŁOJASIEWICZ", "łojasiewicz"),
    ("Régularization", "regularization"),
    ("title:regulari*", "title:regularization OR title:regularizes OR title:regularized"),
]


@pytest.mark.parametrize(("first", "second"), SAME_SELECTION)
def test_equivalent_queries_select_the_same_papers(corpus: Corpus, first: str, second: str) -> None:
    found = selected(corpus, first)
    assert found, first
    assert found == selected(corpus, second)


ONLY = [
    ("ε", {EPSILON}),
    ("title:ε-greedy", {EPSILON}),
    ("α", {ALPHA}),
    ("title:(α deblending) OR title:(α (de)blending)", {ALPHA}),
    ("β", {BETA}),
    ("title:Łojasiewicz", {LOJASIEWICZ}),
    ("LLM-as-a-Judge", {CREAM}),
    ("2.7times", {WTA}),
    ('title:"golden noise"', {GOLDEN}),
    ("title:image-to-video", {I2V}),
    ("title:(not necessary)", {NOT_NECESSARY}),
    ("title:(fourier or)", {FOURIER}),
    ("title:wasserstein title:gan", {WGAN, next(t for t in TITLES if "Wasserstein-GAN" in t)}),
]


@pytest.mark.parametrize(("query", "titles"), ONLY)
def test_query_selects_exactly(corpus: Corpus, query: str, titles: set[str]) -> None:
    assert selected(corpus, query) == titles


INCLUDES = [
    ("agents", RL_VIDEOS, GOLDEN),
    ("abstract:agents", RL_VIDEOS, GOLDEN),
    ("title:agents OR title:agent", None, RL_VIDEOS),
    ("regulari*", SGD_REG, GOLDEN),
    ("title:regulari*", CREAM, RL_VIDEOS),
    ("title:regular*", SGD_REG, GOLDEN),
    ('title:"diffusion models"', GOLDEN, I2V.replace("Model", "Models")),
    ('title:"diffusion models"', ALPHA, RL_VIDEOS),
    ("title:video -diffusion", MUSIC, I2V),
    ("title:video -title:diffusion", RL_VIDEOS, I2V),
    ("title:(video OR gan)", WGAN, GOLDEN),
    ("title:video OR title:gan diffusion", MUSIC, WGAN),
    ("title:(video OR gan) diffusion", I2V, WGAN),
    ("title:wasserstein -title:(gan OR gans)", None, WGAN),
    ("title:and", I2V, GOLDEN),
    ("title:not", NOT_NECESSARY, GOLDEN),
    ("title:or", FOURIER, GOLDEN),
    ("title:Stochastic", NOT_NECESSARY, GOLDEN),
]


@pytest.mark.parametrize(("query", "included", "excluded"), INCLUDES)
def test_query_includes_and_excludes(
    corpus: Corpus, query: str, included: str | None, excluded: str
) -> None:
    found = selected(corpus, query)
    assert included is None or included in found
    assert excluded not in found


@pytest.mark.parametrize(("x", "y"), [("video", "diffusion"), ("noise", "label"), ("gan", "image")])
def test_boolean_and_field_laws(corpus: Corpus, x: str, y: str) -> None:
    sx, sy = selected(corpus, x), selected(corpus, y)
    assert selected(corpus, f"{x} {y}") == sx & sy
    assert selected(corpus, f"{x} OR {y}") == sx | sy
    assert selected(corpus, f"{x} -{y}") == sx - sy
    assert selected(corpus, f"title:{x} OR abstract:{x}") == sx
    assert selected(corpus, f"title:{x}") < sx


def test_matched_names_the_satisfied_terms_as_written(corpus: Corpus) -> None:
    i = TITLES.index(I2V)
    assert corpus.matched(parse("Video diffusion OR gan -survey"), i) == ["Video", "diffusion"]


@pytest.mark.parametrize(
    ("query", "title", "explanation"),
    [
        ("title:video -diffusion", I2V, Explanation(False, ["video"], [], ["diffusion"])),
        ("title:video OR title:gan", GOLDEN, Explanation(False, [], ["video", "gan"], [])),
        ("Golden -(gan OR Noise)", GOLDEN, Explanation(False, ["Golden"], [], ["Noise"])),
        ('"golden noise" OR video*', GOLDEN, Explanation(True, ['"golden noise"'], ["video*"], [])),
        ('"golden noise" video*', GOLDEN, Explanation(False, ['"golden noise"'], ["video*"], [])),
    ],
)
def test_explain(corpus: Corpus, query: str, title: str, explanation: Explanation) -> None:
    assert corpus.explain(parse(query), TITLES.index(title)) == explanation


@pytest.mark.parametrize("query", ["diffusion", "title:video", '"diffusion models"', "regulari*"])
def test_every_match_has_a_positive_relevance(corpus: Corpus, query: str) -> None:
    node = parse(query)
    hits = corpus.evaluate(node)
    assert all(corpus.relevance(node, i) > 0 for i in range(len(PAPERS)) if hits >> i & 1)


def test_relevance_prefers_more_occurrences_and_rarer_terms(corpus: Corpus) -> None:
    twice = TITLES.index(next(t for t in TITLES if t.startswith("Noise Calibration")))
    once = TITLES.index(MUSIC)
    node = parse("title:video")
    assert corpus.relevance(node, twice) > corpus.relevance(node, once)
    i2v = TITLES.index(I2V)  # "video" and "model" once each; "video" is far rarer
    assert corpus.relevance(parse("title:video"), i2v) > corpus.relevance(parse("title:model"), i2v)


# --- authors and categories ----------------------------------------------------------------

SOURCED = {
    "engines": Document(
        "Notes on the analytical engine", "Bernoulli numbers.",
        ("Ada Lovelace", "Émilie du Châtelet"), ("cs.CL", "cs.LG"),
    ),
    "convnets": Document(
        "Convolutional networks", "Handwritten digits.",
        ("Yann LeCun", "Léon Bottou", "Yoshua Bengio"), ("cs.CV", "cs.LG", "stat.ML"),
    ),
    "reversed": Document(
        "A reply", "On the engine.", ("Lovelace Émilie Durand",), ("math.HO",)
    ),
    "namesake": Document(
        "Lovelace and the engine", "Lovelace wrote of LeCun-like machines.", (), ()
    ),
    "serre": Document(
        "Cohomologie galoisienne", "Corps locaux.",
        ("Jean-Pierre Serre", "Conor O'Brien"), ("math.AG", "hep-th"),
    ),
    "physics": Document(
        "Spin glasses", "Replica trick.", ("ADA KING",), ("cond-mat.stat-mech", "cs.CLX")
    ),
    "attention": Document(
        "Attention is all", "Transformers.", ("Łukasz Kaiser", "Søren Ørsted"), ()
    ),
}  # fmt: skip
NAMED = list(SOURCED)


@pytest.fixture(scope="module")
def sourced() -> Corpus:
    return Corpus(STEMMER, list(SOURCED.values()))


def picked(corpus: Corpus, query: str) -> set[str]:
    return {NAMED[i] for i in members(corpus.evaluate(parse(query)))}


AUTHORED = [
    ("author:lovelace", {"engines", "reversed"}),
    ("author:LOVELACE", {"engines", "reversed"}),
    ("lovelace", {"namesake"}),
    ("title:lovelace OR author:lovelace", {"engines", "reversed", "namesake"}),
    ("author:chatelet", {"engines"}),
    ("author:Châtelet", {"engines"}),
    ("author:CHÂTELET", {"engines"}),
    ("author:emilie", {"engines", "reversed"}),
    ('author:"du Chatelet"', {"engines"}),
    ('author:"émilie du châtelet"', {"engines"}),
    ('author:"Ada Lovelace"', {"engines"}),
    ('author:"lovelace emilie"', {"reversed"}),
    ('author:"lovelace émilie durand"', {"reversed"}),
    ('author:"ada lovelace emilie"', set()),
    ('author:"Lovelace Ada"', set()),
    ("author:lov*", {"engines", "reversed"}),
    ("author:lu*", {"attention"}),
    ('author:"Lukasz Kaiser"', {"attention"}),
    ('author:"łukasz kaiser"', {"attention"}),
    ("author:soren", {"attention"}),
    ("author:ørsted", {"attention"}),
    ("author:orsted", {"attention"}),
    ("author:le*", {"convnets"}),
    ("author:leon", {"convnets"}),
    ("author:lecun", {"convnets"}),
    ("author:lecuns", set()),
    ("author:bengio author:lecun", {"convnets"}),
    ("author:(bengio lovelace)", set()),
    ("author:(bengio OR lovelace)", {"engines", "convnets", "reversed"}),
    ("author:Jean-Pierre", {"serre"}),
    ("author:o'brien", {"serre"}),
    ("author:obrien", set()),
    ("author:ada", {"engines", "physics"}),
    ("author:ada -author:king", {"engines"}),
    ("category:cs.CL", {"engines"}),
    ("category:CS.cl", {"engines"}),
    ("category:cs.LG", {"engines", "convnets"}),
    ("category:cs", set()),
    ("category:cs.*", {"engines", "convnets", "physics"}),
    ("category:cs.CL*", {"engines", "physics"}),
    ("category:hep-th", {"serre"}),
    ("category:hep*", {"serre"}),
    ("category:cond-mat.stat-mech", {"physics"}),
    ("category:(math.* OR stat.ML)", {"convnets", "reversed", "serre"}),
    ("category:cs.LG -category:cs.CV", {"engines"}),
    ("engine -category:math.*", {"engines", "namesake"}),
    ("engine author:lovelace -category:cs.CL", {"reversed"}),
    ("title:engine OR category:hep-th", {"engines", "namesake", "serre"}),
]


@pytest.mark.parametrize(("query", "names"), AUTHORED)
def test_authors_and_categories_select_exactly(
    sourced: Corpus, query: str, names: set[str]
) -> None:
    """Any author, any category; names accent- and case-blind but unstemmed; a phrase
    within one author's name; a category whole, or a prefix with ``*``."""
    assert picked(sourced, query) == names


@pytest.mark.parametrize(("query", "names"), AUTHORED)
def test_authors_and_categories_agree_with_the_naive_oracle(
    sourced: Corpus, query: str, names: set[str]
) -> None:
    node = parse(query)
    assert picked(sourced, query) == {
        name for name, doc in SOURCED.items() if naive_document(node, doc)
    }
    focused = Corpus(STEMMER, list(SOURCED.values()), Focus.of(node, STEMMER))
    assert focused.evaluate(node) == sourced.evaluate(node)


def naive_document(node: Node, doc: Document) -> bool:
    """The documented semantics on one document, no index."""
    match node:
        case And(children):
            return all(naive_document(child, doc) for child in children)
        case Or(children):
            return any(naive_document(child, doc) for child in children)
        case Not(child):
            return not naive_document(child, doc)
    assert isinstance(node, Term | Phrase | Prefix)
    if node.field in META_FIELDS:
        return naive_meta(node, doc)
    fields = {"title": doc.title, "abstract": doc.abstract}
    analyses = [
        STEMMER.analyze(text) for name, text in fields.items() if node.field in (None, name)
    ]
    if isinstance(node, Prefix):
        return any(w.startswith(node.prefix) for a in analyses for w in a.words)
    folded = node.words if isinstance(node, Phrase) else (node.word,)
    wanted = tuple(STEMMER.stem(w) for w in folded)
    return any(contains(a.stems, wanted) for a in analyses)


def test_papers_without_metadata_match_no_author_and_no_category(corpus: Corpus) -> None:
    """Text dumps give neither: such a paper is excluded by author:x, kept by -author:x."""
    assert corpus.evaluate(parse("author:lovelace OR category:cs.*")) == 0
    assert corpus.evaluate(parse("diffusion -author:lovelace")) == corpus.evaluate(
        parse("diffusion")
    )


def test_explain_names_author_and_category_terms_with_their_field(sourced: Corpus) -> None:
    node = parse("author:lovelace -category:cs.CL OR (category:hep-th author:serre)")
    assert sourced.explain(node, NAMED.index("engines")) == Explanation(
        False,
        ["author:lovelace"],
        ["category:hep-th", "author:serre"],
        ["category:cs.CL"],
    )
    assert sourced.matched(node, NAMED.index("serre")) == ["category:hep-th", "author:serre"]


def test_a_rare_author_weighs_in_the_relevance_like_a_rare_word(sourced: Corpus) -> None:
    node = parse("author:lecun OR category:cs.LG")
    convnets, engines = NAMED.index("convnets"), NAMED.index("engines")
    assert sourced.relevance(node, convnets) > sourced.relevance(node, engines) > 0


@pytest.mark.parametrize("field", ["abstract", "title", None])
def test_highlights_skip_author_and_category_leaves(field: TextField | None) -> None:
    """The abstract is highlighted where its own words matched, never for a name or category."""
    text = "Lovelace wrote about cs.CL and the engine."
    node = parse("author:lovelace category:cs.CL engine")
    spans = highlights(node, text, STEMMER, field)
    assert [text[a:b] for a, b in spans] == ["engine"]
    assert highlights(parse("author:lovelace OR category:cs.*"), text, STEMMER, field) == []


def test_one_highlighter_marks_text_after_text_as_each_text_alone() -> None:
    """A digest prepares its filter's leaves once (``highlighter``) for all its papers."""
    texts = [
        "Diffusion models diffuse; a diffusing model.",
        "Café-style naïve diffusion, then « models » again.",  # folding moves characters
        "",
        "Nothing here.",
        "Diffusion MODELS and model diffusion.",
    ]
    for query in ['"diffusion model" OR diffus*', "model -nothing", "author:x OR caf*"]:
        node = parse(query)
        spans_of = highlighter(node, STEMMER, "abstract")
        together = [spans_of(text) for text in texts]
        assert together == [highlights(node, text, STEMMER, "abstract") for text in texts]
        assert (
            together == [highlights(node, text, STEMMER, "abstract") for text in texts[::-1]][::-1]
        )
    marked = highlighter(parse('"diffusion model"'), STEMMER)(texts[4])
    assert [texts[4][a:b] for a, b in marked] == ["Diffusion MODELS"]


def test_author_and_category_terms_count_towards_the_filter_limit() -> None:
    assert leaf_count(parse("author:(a b) category:(cs.CL OR cs.*) -author:c x")) == 6


VALID = [q for q, _ in PARSES] + [q for pair in SAME_SELECTION for q in pair]
VALID += [q for q, _ in ONLY] + [q for q, *_ in INCLUDES]


@pytest.mark.parametrize("query", VALID)
def test_corpus_agrees_with_the_naive_oracle(corpus: Corpus, query: str) -> None:
    node = parse(query)
    bits = corpus.evaluate(node)
    assert bools(bits) == naive(node)


HALF = DOCUMENTS[::2]  # every other seed paper: the property is per paper, the cost per paper


@pytest.fixture(scope="module")
def half_corpus() -> Corpus:
    return Corpus(STEMMER, HALF)


@pytest.mark.parametrize("query", VALID)
def test_a_corpus_focused_on_one_filter_answers_it_as_the_full_one(
    half_corpus: Corpus, query: str
) -> None:
    """The preview and backtests index only what their filter asks about: same answers."""
    node = parse(query)
    focused = Corpus(STEMMER, HALF, Focus.of(node, STEMMER))
    assert focused.evaluate(node) == half_corpus.evaluate(node)
    for i in members(half_corpus.evaluate(node)):
        assert focused.matched(node, i) == half_corpus.matched(node, i)
        assert focused.relevance(node, i) == pytest.approx(half_corpus.relevance(node, i))


# --- FTS5 prefilter ----------------------------------------------------------------------

FTS5 = [
    ("agents", '"agents"'),
    ("and", '"and"'),
    ('title:"Video Generation"', '{title} : ("video generation")'),
    ("a b", '("a") AND ("b")'),
    ("a OR b", '("a") OR ("b")'),
    ("a b OR c", '(("a") AND ("b")) OR ("c")'),
    ('abstract:(x OR "y z")', '({abstract} : ("x")) OR ({abstract} : ("y z"))'),
    ("regulari*", None),
    ("video regulari*", '"video"'),
    ("video -diffusion", '"video"'),
    ("video OR regulari*", None),
    ("a OR -b", None),
    ("GPT-4", '"gpt 4"'),
    ("Ε", '"ε"'),
    ("author:lecun", None),
    ('author:"yann lecun"', None),
    ("category:cs.CL", None),
    ("video author:lecun", '"video"'),
    ("video category:cs.*", '"video"'),
    ("video OR author:lecun", None),
    ("video -author:lecun", '"video"'),
    ("video -(title:x author:lecun)", '"video"'),
    (
        'title:video abstract:(x OR "y z") author:x',
        '({title} : ("video")) AND (({abstract} : ("x")) OR ({abstract} : ("y z")))',
    ),
]


@pytest.mark.parametrize(("query", "expression"), FTS5)
def test_to_fts5(query: str, expression: str | None) -> None:
    assert to_fts5(parse(query)) == expression


def fts5_rows(fts: sqlite3.Connection, node: Node) -> set[int]:
    expression = to_fts5(node)
    if expression is None:
        return set(range(len(PAPERS)))
    rows = fts.execute("SELECT rowid FROM p WHERE p MATCH ?", (expression,))
    return {rowid - 1 for (rowid,) in rows}


QUOTED = re.compile(r'"(?:[^"]|"")*"')
OUR_SYNTAX = re.compile(r"(?:[(){} :]|AND|OR|title|abstract)*")


def check_prefilter(corpus: Corpus, fts: sqlite3.Connection, node: Node) -> None:
    """User text reaches FTS5 only inside strings, and the prefilter never loses a match."""
    expression = to_fts5(node)
    assert expression is None or OUR_SYNTAX.fullmatch(QUOTED.sub("", expression))
    bits = corpus.evaluate(node)
    python = {i for i in range(len(PAPERS)) if bits >> i & 1}
    prefiltered = fts5_rows(fts, node)
    assert python <= prefiltered
    if exact_in_fts5(node):
        assert python == prefiltered


@pytest.mark.parametrize("query", VALID)
def test_fts5_prefilter_is_a_superset_and_exact_without_prefix_or_not(
    corpus: Corpus, fts: sqlite3.Connection, query: str
) -> None:
    check_prefilter(corpus, fts, parse(query))


# --- arbitrary input ---------------------------------------------------------------------

FUZZ = settings(
    max_examples=examples(300),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
PIECES = 'a b ab video Diffusion ε " ( ) * - : + ^ NEAR OR AND NOT title abstract title: abstract:'
PIECES += " author: category: cs.CL cs.* . Émilie"
GRAMMARISH = st.lists(
    st.tuples(st.sampled_from(PIECES.split()), st.sampled_from(["", " "])), max_size=12
).map(lambda parts: "".join(piece + gap for piece, gap in parts))
LEAVES = st.sampled_from(
    [
        "video",
        "Videos",
        "diffusion",
        "model",
        '"diffusion-models"',
        "regulari*",
        "gan",
        "ε",
        "transform*",
        "Łojasiewicz",
        "LLM-as-a-judge",
        "and",
        "pruning",
        "noise",
        "label",
        "author:lovelace",
        'author:"ada lovelace"',
        "author:chat*",
        "category:cs.CL",
        "category:cs.*",
    ]
)


def compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    several = st.lists(inner, min_size=2, max_size=3)
    fields = st.sampled_from(["title:", "abstract:", "author:", "-", "NOT ", ""])
    return st.one_of(
        several.map(" ".join),
        several.map(" OR ".join),
        st.tuples(fields, inner).map(lambda pair: f"{pair[0]}({pair[1]})"),
    )


WELL_FORMED = st.recursive(LEAVES, compound, max_leaves=6)


def outcome(query: str) -> Node | QueryError:
    """The tree, or the error, of a query: whatever parse does must be one of the two."""
    try:
        return parse(query)
    except QueryError as error:
        return error


def parse_or_error(query: str) -> Node | None:
    result = outcome(query)
    if isinstance(result, QueryError):
        assert 0 <= result.column <= len(query)
        *_, shown, caret = str(result).split("\n")
        assert len(shown) == len(query) + 2
        assert caret.strip() == "^"
        assert len(caret) - 3 >= result.column  # wide characters push the caret right
        return None
    return result


@FUZZ
@given(query=st.text())
def test_any_text_parses_or_raises_query_error(
    corpus: Corpus, fts: sqlite3.Connection, query: str
) -> None:
    node = parse_or_error(query)
    if node is not None:
        check_prefilter(corpus, fts, node)


@FUZZ
@given(query=GRAMMARISH)
def test_grammar_soup_parses_or_raises_query_error(
    corpus: Corpus, fts: sqlite3.Connection, query: str
) -> None:
    node = parse_or_error(query)
    if node is not None:
        check_prefilter(corpus, fts, node)


@FUZZ
@given(query=WELL_FORMED)
def test_well_formed_queries_agree_with_oracle_and_prefilter(
    corpus: Corpus, fts: sqlite3.Connection, query: str
) -> None:
    node = outcome(query)
    if isinstance(node, QueryError):
        assert node.reason.startswith(("a filter must", *(f"{f}: cannot" for f in FIELDS)))
        return
    bits = corpus.evaluate(node)
    assert bools(bits) == naive(node)
    check_prefilter(corpus, fts, node)


# --- random authors and categories ------------------------------------------------------

NAMES = ["Ada Lovelace", "Émilie du Châtelet", "Lovelace Émilie Durand", "Yann LeCun", "ADA KING"]
CODES = ["cs.CL", "cs.LG", "stat.ML", "hep-th", "cs.CLX"]
TEXTS = ["Lovelace engines", "video diffusion models", "", "Émilie and Ada"]
SOURCED_DOCUMENTS = st.lists(
    st.builds(
        Document,
        st.sampled_from(TEXTS),
        st.sampled_from(TEXTS),
        st.lists(st.sampled_from(NAMES), max_size=3, unique=True).map(tuple),
        st.lists(st.sampled_from(CODES), max_size=2, unique=True).map(tuple),
    ),
    min_size=1,
    max_size=8,
)
META_LEAVES = st.sampled_from(
    [
        "author:lovelace",
        'author:"ada lovelace"',
        'author:"lovelace emilie"',
        "author:Châtelet",
        "author:lov*",
        "author:ada",
        "category:cs.CL",
        "category:cs.*",
        "category:CS.lg",
        "lovelace",
        "title:engines",
        "video",
        '"diffusion models"',
        "emilie",
    ]
)
WITH_META = st.recursive(
    META_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(" ".join),
        st.lists(inner, min_size=2, max_size=3).map(" OR ".join),
        st.tuples(st.sampled_from(["-", "NOT ", ""]), inner).map(
            lambda pair: f"{pair[0]}({pair[1]})"
        ),
    ),
    max_leaves=6,
)


@FUZZ
@given(docs=SOURCED_DOCUMENTS, query=WITH_META)
def test_random_filters_on_random_authors_and_categories_agree_with_the_oracle(
    docs: list[Document], query: str
) -> None:
    node = outcome(query)
    if isinstance(node, QueryError):
        assert node.reason.startswith("a filter must")
        return
    corpus = Corpus(STEMMER, docs)
    assert bools_of(corpus.evaluate(node), len(docs)) == [naive_document(node, d) for d in docs]
    focused = Corpus(STEMMER, docs, Focus.of(node, STEMMER))
    assert focused.evaluate(node) == corpus.evaluate(node)


def bools_of(bits: int, size: int) -> list[bool]:
    return [bool(bits >> i & 1) for i in range(size)]


# --- the store's prefilter with authors and categories -----------------------------------

AUTHORS = [("Ada Lovelace", "Émilie du Châtelet"), ("Yann LeCun",), ("Lovelace Émilie Durand",), ()]
CATEGORIES = [("cs.CL", "cs.LG"), ("cs.CV",), ("stat.ML",), ()]


class SourcedStore(NamedTuple):
    """A store whose papers partly carry authors and categories, and a Corpus of its papers."""

    store: Store
    papers: list[PaperRow]
    corpus: Corpus

    def __repr__(self) -> str:  # Hypothesis prints it with a failing example: keep it short
        return f"SourcedStore({len(self.papers)} papers)"


@pytest.fixture
def sourced_store(seeded_store: Store) -> SourcedStore:
    """The seeds, every seventh of them listed again by a source that knows its authors and
    categories, and the store's papers as ``match`` hands them to a Corpus."""
    again = seeded_store.papers()[::7]
    entries = [
        Entry.of(
            n,
            p.title,
            p.abstract,
            n,
            PaperMeta(f"2411.{n:05d}", AUTHORS[n % 4], CATEGORIES[n // 4 % 4]),
        )
        for n, p in enumerate(again, start=1)
    ]
    from_source(seeded_store, "arxiv", "2026-11-24", entries, NOW)
    papers = seeded_store.papers()
    return SourcedStore(seeded_store, papers, Corpus(STEMMER, documents(papers)))


def test_the_sourced_store_has_papers_matched_by_authors_alone(sourced_store: SourcedStore) -> None:
    """What makes the property below bite: "lovelace" is in no text, only in authors."""
    corpus = sourced_store.corpus
    assert corpus.evaluate(parse("author:lovelace")).bit_count() > 40
    assert corpus.evaluate(parse("lovelace")) == 0
    assert corpus.evaluate(parse("model author:lovelace -category:cs.CL")) != 0


STORE_LEAVES = st.sampled_from(
    [
        "video",
        "diffusion",
        "model",
        '"diffusion models"',
        "regulari*",
        "title:video",
        "abstract:noise",
        "author:lovelace",
        'author:"ada lovelace"',
        'author:"lovelace emilie"',
        "author:chatelet",
        "author:lov*",
        "author:lecun",
        "category:cs.CL",
        "category:cs.*",
        "category:stat.ML",
    ]
)
STORE_FILTERS = st.recursive(
    STORE_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(" ".join),
        st.lists(inner, min_size=2, max_size=3).map(" OR ".join),
        st.tuples(st.sampled_from(["-", "NOT ", ""]), inner).map(lambda p: f"{p[0]}({p[1]})"),
    ),
    max_leaves=6,
)


@FUZZ
@given(query=STORE_FILTERS)
def test_the_stores_prefilter_keeps_every_paper_a_filter_with_authors_matches(
    sourced_store: SourcedStore, query: str
) -> None:
    """Authors and categories are not in the FTS5 index: the prefilter must let through
    every paper they could select, under AND, OR and NOT alike (``Corpus`` decides)."""
    node = outcome(query)
    if isinstance(node, QueryError):
        assert node.reason.startswith("a filter must")
        return
    papers = sourced_store.papers
    matched = {papers[i].seq for i in members(sourced_store.corpus.evaluate(node))}
    assert matched <= {p.seq for p in sourced_store.store.papers(fts=to_fts5(node))}


@pytest.fixture(scope="module")
def unicode61() -> Iterator[sqlite3.Connection]:
    """SQLite's own tokenizer, unstemmed: the words the store's index sees."""
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE VIRTUAL TABLE w USING fts5(text, tokenize='unicode61 remove_diacritics 2')"
    )
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(w, 'instance')")
    yield conn
    conn.close()


def sqlite_words(conn: sqlite3.Connection, text: str) -> list[str]:
    with conn:
        conn.execute("INSERT INTO w(rowid, text) VALUES (1, ?)", [text])
        found = [row[0] for row in conn.execute("SELECT term FROM v ORDER BY offset")]
        conn.execute("DELETE FROM w")
    return found


@FUZZ
@given(text=st.text(st.characters(max_codepoint=127)))
def test_ascii_text_splits_into_the_words_sqlite_sees(
    unicode61: sqlite3.Connection, text: str
) -> None:
    assert words(text) == sqlite_words(unicode61, text)


def test_the_seed_papers_split_into_the_words_sqlite_sees(unicode61: sqlite3.Connection) -> None:
    for title, abstract in PAPERS:
        for text in (title, abstract):
            assert words(text) == sqlite_words(unicode61, text), text[:60]


@pytest.mark.parametrize(
    ("query", "caret"), [("日本 AND", "       ^"), ("a\tOR", "    ^"), ("a\nOR", "    ^")]
)
def test_the_caret_lines_up_under_wide_characters_and_control_whitespace(
    query: str, caret: str
) -> None:
    with pytest.raises(QueryError) as caught:
        parse(query)
    shown, line = str(caught.value).split("\n")[1:]
    assert "\n" not in shown
    assert "\t" not in shown
    assert line == caret
