"""The dump parser: every rule of DUMP_FORMAT.md, on the real seeds and on crafted input."""

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.dumps import ABSTRACT_MIN, MAX_LINE_BYTES, TITLE_MAX, Dump, DumpParser, parse
from digest.errors import DumpError
from digest.models import Entry

ABSTRACT = (
    "We study how trending papers are listed and propose a parser that keeps every entry "
    "in order, tolerates messy input and rejects what would shift the pairs, with a link "
    "https://github.com/example/repo for the code."
)
assert len(ABSTRACT) >= ABSTRACT_MIN


def dump(*lines: str, sep: str = "\n") -> str:
    return sep.join(lines) + sep


# the seeds ---------------------------------------------------------------------------

SEED_COUNTS = {
    "000": (54, "Jul 30"),
    "001": (215, None),
    "002": (213, None),
    "003": (61, "Mar 18"),
    "004": (224, None),
}


@pytest.mark.parametrize("prefix", sorted(SEED_COUNTS))
def test_each_seed_parses_to_its_known_entry_count_and_date(
    seed_files: list[Path], prefix: str
) -> None:
    path = next(p for p in seed_files if p.name.startswith(prefix))
    parsed = parse(path.read_bytes(), path.name)
    count, listing_date = SEED_COUNTS[prefix]
    assert len(parsed.entries) == count
    assert parsed.listing_date == listing_date
    assert [e.position for e in parsed.entries] == list(range(1, count + 1))


def test_seeds_hold_767_entries_and_689_distinct_papers(seed_files: list[Path]) -> None:
    entries = [e for p in seed_files for e in parse(p.read_bytes(), p.name).entries]
    assert len(entries) == 767
    assert len({e.paper_id for e in entries}) == 689


def test_packed_layout_takes_the_title_glued_to_subscribe(seed_files: list[Path]) -> None:
    packed = next(p for p in seed_files if p.name.startswith("001"))
    first = parse(packed.read_bytes()).entries[0]
    assert first.title == "Delta Denoising Score"
    assert first.abstract.startswith("We introduce Delta Denoising Score (DDS)")
    assert first.line == 3


def test_spaced_layout_skips_every_header_line(seed_files: list[Path]) -> None:
    spaced = next(p for p in seed_files if p.name.startswith("000"))
    first = parse(spaced.read_bytes()).entries[0]
    assert first.title.startswith("Training-free Guidance in Text-to-Video Generation")
    assert first.line == 13


def test_a_seed_mixed_from_both_layouts_parses(seed_files: list[Path]) -> None:
    spaced = next(p for p in seed_files if p.name.startswith("000")).read_text()
    packed = next(p for p in seed_files if p.name.startswith("001")).read_text()
    body = "\n".join(packed.splitlines()[2:]).removeprefix("Subscribe")
    parsed = parse(spaced + "\n" + body + "\n")
    assert len(parsed.entries) == 54 + 215


# tolerated messiness -----------------------------------------------------------------

TOLERATED = {
    "byte-order mark": "\ufeff" + dump("Subscribe", "A Title", ABSTRACT),
    "CRLF line ends": dump("Subscribe", "A Title", ABSTRACT, sep="\r\n"),
    "trailing spaces": dump("Subscribe   ", "A Title  \t", ABSTRACT + "   "),
    "runs of empty lines": dump("Subscribe", "", "", "", "A Title", "", "", ABSTRACT, "", ""),
    "missing header lines": dump("A Title", ABSTRACT),
    "packed header": dump("Get trending papers in your email inbox!", "SubscribeA Title", ABSTRACT),
}


@pytest.mark.parametrize("text", TOLERATED.values(), ids=TOLERATED.keys())
def test_messy_but_valid_input_is_tolerated(text: str) -> None:
    parsed = parse(text)
    assert [(e.title, e.abstract) for e in parsed.entries] == [("A Title", ABSTRACT)]


def test_a_header_with_no_entries_is_valid_and_empty() -> None:
    assert parse(
        dump("new", "Get trending papers in your email inbox!", "Subscribe", "Jul 30")
    ) == Dump("Jul 30", [])


def test_an_empty_file_is_valid_and_empty() -> None:
    assert parse(b"") == Dump(None, [])


def test_header_phrases_after_the_first_title_are_titles() -> None:
    parsed = parse(dump("A Title", ABSTRACT, "Subscribe", ABSTRACT))
    assert [e.title for e in parsed.entries] == ["A Title", "Subscribe"]


def test_the_listing_date_is_only_taken_from_the_header() -> None:
    parsed = parse(dump("Jul 30", "A Title", ABSTRACT, "Mar 18", ABSTRACT))
    assert parsed.listing_date == "Jul 30"
    assert [e.title for e in parsed.entries] == ["A Title", "Mar 18"]


# rejections --------------------------------------------------------------------------

LONG_LINE = "x" * (TITLE_MAX + 1)
REJECTED = {
    "title without abstract at the end": (
        dump("Subscribe", "A Title", ABSTRACT, "Lonely Title"),
        4,
        "this title has no abstract: the file ends after it",
    ),
    "title without abstract in the middle": (
        dump("A Title", ABSTRACT, "Lonely Title", "Next Title", ABSTRACT),
        4,
        "the title on line 3 has no abstract",
    ),
    "title without abstract in the middle, long next title": (
        dump("A Title", ABSTRACT, "Lonely Title", "N" * 200, ABSTRACT + ABSTRACT),
        5,
        "is the abstract of the title on line 3 missing?",
    ),
    "not UTF-8": (
        b"A Title\n" + ABSTRACT.encode() + b"\nCaf\xe9 Title\n",
        3,
        "not UTF-8 text (byte 0xE9 at column 4)",
    ),
    "binary content": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 1, "not UTF-8 text"),
    "NUL bytes": (
        dump("A Title", ABSTRACT, "Bad\x00Title", ABSTRACT).encode(),
        3,
        "binary content",
    ),
    "a line far too long where a title is due": (
        dump("Subscribe", LONG_LINE, ABSTRACT),
        2,
        "a title is due",
    ),
    "a line beyond any abstract": (b"A Title\n" + b"y" * MAX_LINE_BYTES, 2, "line far too long"),
}


@pytest.mark.parametrize(("content", "line", "reason"), REJECTED.values(), ids=REJECTED.keys())
def test_bad_input_is_rejected_naming_the_file_and_line(
    content: str | bytes, line: int, reason: str
) -> None:
    with pytest.raises(DumpError) as caught:
        parse(content, "bad.txt")
    error = caught.value
    assert error.line == line
    assert reason in error.reason
    assert str(error).startswith(f"bad.txt:{line}: ")
    assert "\n" not in str(error)


# arbitrary input ---------------------------------------------------------------------


def _check_total(content: str | bytes) -> None:
    """Entries with a title and an abstract each, or the parser's own error with a line number."""
    outcome: Dump | DumpError
    try:
        outcome = parse(content)
    except DumpError as error:
        outcome = error
    if isinstance(outcome, DumpError):
        assert outcome.line >= 0
        assert outcome.reason
    else:
        assert all(e.title and e.abstract for e in outcome.entries)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_gives_entries_or_a_dump_error(text: str) -> None:
    _check_total(text)


@settings(max_examples=300, deadline=None)
@given(st.binary())
def test_arbitrary_bytes_give_entries_or_a_dump_error(data: bytes) -> None:
    _check_total(data)


LINES = st.sampled_from(
    ["", "Subscribe", "new", "Jul 30", "A Title", ABSTRACT, "\ufeff", "x\r", LONG_LINE, "é"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINES, max_size=12))
def test_arbitrary_line_mixes_give_entries_or_a_dump_error(lines: list[str]) -> None:
    _check_total("\n".join(lines))


def test_the_shipped_sample_dumps_are_the_real_seeds(seed_files: list[Path]) -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "seeds"
    if not shared.is_dir():
        pytest.skip(f"no {shared} beside the checkout to compare with")
    assert {p.name: p.read_bytes() for p in seed_files} == {
        p.name: p.read_bytes() for p in sorted(shared.glob("*.txt"))
    }


def _outcome(lines: list[bytes] | list[str]) -> list[Entry] | str:
    try:
        return list(DumpParser("dump.txt").parse(lines))
    except DumpError as err:
        return str(err)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(LINES, st.text(max_size=30)), max_size=12))
def test_lines_as_bytes_and_lines_as_text_are_judged_alike(lines: list[str]) -> None:
    """Bytes lines take the parser's fast path, text lines the careful one: same verdict."""
    text = "\n".join(lines) + "\n"
    as_bytes = io.BytesIO(text.encode()).readlines()
    as_text = [line + "\n" for line in text.split("\n")[:-1]]
    assert _outcome(as_bytes) == _outcome(as_text)
