"""The dump parser: every rule of DUMP_FORMAT.md, on the real seeds and on crafted input."""

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.dumps import ABSTRACT_MIN, MAX_LINE_BYTES, TITLE_MAX, Dump, DumpParser, parse
from digest.errors import DumpError
from digest.models import Entry

from .conftest import examples

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


def _verdict(content: str | bytes) -> Dump | DumpError:
    try:
        return parse(content)
    except DumpError as error:
        return error


GOOD = dump("A Title", ABSTRACT)
GOOD_ENTRY = Entry.of(1, "A Title", ABSTRACT, 1)


def _judge_after_a_good_entry(rest: bytes) -> None:
    """A good entry, then anything: the entry is kept, or the rest is blamed, never the entry.

    Accepted, the rest's non-empty lines are the next titles and abstracts, in
    order; rejected, the error names a line of the rest.
    """
    rest_lines = io.BytesIO(rest).readlines()
    parsed = _verdict(GOOD.encode() + rest)
    if isinstance(parsed, DumpError):
        assert 3 <= parsed.line <= 2 + len(rest_lines)
        assert parsed.reason
        return
    assert parsed.entries[0] == GOOD_ENTRY
    texts = [text for line in rest_lines if (text := line.decode("utf-8").strip())]
    assert [(e.title, e.abstract) for e in parsed.entries[1:]] == list(
        zip(texts[::2], texts[1::2], strict=True)
    )
    assert [e.position for e in parsed.entries] == list(range(1, len(parsed.entries) + 1))


@settings(max_examples=examples(300), deadline=None)
@given(st.text())
def test_arbitrary_text_after_a_good_entry_gives_more_entries_or_an_error_past_it(
    text: str,
) -> None:
    _judge_after_a_good_entry(text.encode())


@settings(max_examples=examples(300), deadline=None)
@given(st.binary())
def test_arbitrary_bytes_after_a_good_entry_give_more_entries_or_an_error_past_it(
    data: bytes,
) -> None:
    _judge_after_a_good_entry(data)


LINES = st.sampled_from(
    [
        "",
        "Subscribe",
        "new",
        "Jul 30",
        "A Title",
        "SubscribeA Title",
        ABSTRACT,
        "\ufeff",
        "x\r",
        LONG_LINE,
        "é",
    ]
)
HEADER = {"Subscribe", "new", "Jul 30"}


def _by_the_rules(lines: list[str]) -> tuple[str | None, list[tuple[str, str, int]]] | int:
    """DUMP_FORMAT.md on these lines: (listing date, [(title, abstract, line)]), or the bad line.

    Header phrases and dates are skipped until the first title (which may be glued
    to "Subscribe"); then non-empty lines alternate a title of at most TITLE_MAX
    characters and an abstract of at least ABSTRACT_MIN; a title needs its abstract.
    """
    listing_date: str | None = None
    entries: list[tuple[str, str, int]] = []
    title: tuple[str, int] | None = None
    in_header = True
    for number, line in enumerate(lines, start=1):
        text = (line.removeprefix("\ufeff") if number == 1 else line).strip()
        if not text:
            continue
        if in_header and text in HEADER:
            listing_date = text if text == "Jul 30" else listing_date
            continue
        if in_header:
            in_header = False
            text = text.removeprefix("Subscribe")
        if title is None:
            if len(text) > TITLE_MAX:
                return number
            title = (text, number)
        else:
            if len(text) < ABSTRACT_MIN:
                return number
            entries.append((title[0], text, title[1]))
            title = None
    if title is not None:
        return title[1]
    return listing_date, entries


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(LINES, max_size=12))
def test_arbitrary_line_mixes_are_judged_by_the_rules_of_the_format(lines: list[str]) -> None:
    expected = _by_the_rules(lines)
    parsed = _verdict("\n".join(lines))
    if isinstance(parsed, DumpError):
        assert parsed.line == expected
        return
    assert (
        parsed.listing_date,
        [(e.title, e.abstract, e.line) for e in parsed.entries],
    ) == expected


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


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.one_of(LINES, st.text(max_size=30)), max_size=12))
def test_lines_as_bytes_and_lines_as_text_are_judged_alike(lines: list[str]) -> None:
    """Bytes lines take the parser's fast path, text lines the careful one: same verdict."""
    text = "\n".join(lines) + "\n"
    as_bytes = io.BytesIO(text.encode()).readlines()
    as_text = [line + "\n" for line in text.split("\n")[:-1]]
    assert _outcome(as_bytes) == _outcome(as_text)
