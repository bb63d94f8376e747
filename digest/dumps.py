"""The dump parser: lines of a trending-papers listing in, entries or a precise error out.

Pure: it reads nothing itself.  It is fed lines (bytes or str) one by one so a
dump of any size streams through in constant memory; the caller decides what
to do with each entry.  The rules are those of ``DUMP_FORMAT.md``: header
phrases and an optional ``Mon D`` listing date before the first title, then
non-empty lines alternating title and abstract; BOM, CRLF, trailing spaces,
runs of empty lines and missing header lines are tolerated; a title without
an abstract, non-UTF-8 text, binary content and a line far too long for its
place are rejected with the line number.
"""

import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NoReturn

from digest.errors import DumpError
from digest.models import Entry

HEADER_PHRASES = frozenset(
    {
        "new",
        "Get trending papers in your email inbox!",
        "Get trending papers in your email inbox once a day!",
        "Subscribe",
        "Daily Papers",
        "byAK and the research community",
    }
)
PACKED_PREFIX = "Subscribe"
LISTING_DATE = re.compile(r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([1-9]|[12]\d|3[01])")
TITLE_MAX = 300
ABSTRACT_MIN = 150
ABSTRACT_MAX = 20_000
MAX_LINE_BYTES = 4 * ABSTRACT_MAX
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_BOM = "\ufeff"


@dataclass(slots=True)
class DumpParser:
    """Feed it the lines of one dump; it yields entries and remembers the header's listing date."""

    source: str = "<dump>"
    listing_date: str | None = None
    entries: int = 0

    def parse(self, lines: Iterable[bytes | str]) -> Iterator[Entry]:
        """Yield each entry in listing order; raise DumpError at the first bad line.

        This loop is the hot path of an ingest (two lines per entry), so the
        common line is handled inline: bytes that hold no control byte and
        decode as UTF-8.  Any other line goes through ``_clean``, which also
        finds the precise error.
        """
        title: str | None = None
        title_line = 0
        in_header = True
        for number, raw in enumerate(lines, start=1):
            if (
                type(raw) is bytes
                and number > 1
                and len(raw) < MAX_LINE_BYTES
                and len(raw.translate(None, _CONTROL_BYTES)) == len(raw)
            ):
                try:
                    text = raw.decode("utf-8").strip()
                except UnicodeDecodeError:
                    text = self._clean(raw, number)
            else:
                text = self._clean(raw, number)
            if not text:
                continue
            if in_header:
                if self._header_line(text):
                    continue
                in_header = False
                text = _unpack_first_title(text)
            if title is None:
                if title_problem(text):
                    self._title_too_long(text, number, title_line)
                title, title_line = text, number
            else:
                if abstract_problem(text):
                    self._bad_abstract(text, number, title_line)
                self.entries += 1
                yield Entry.of(self.entries, title, text, title_line)
                title = None
        if title is not None:
            self._fail("this title has no abstract: the file ends after it", title_line)

    def _clean(self, raw: bytes | str, number: int) -> str:
        """The line's text without BOM, newline or edge spaces; or the precise reason it is bad."""
        if len(raw) >= MAX_LINE_BYTES and not _ends_line(raw):
            self._fail(
                f"line far too long to be a title or an abstract (over {MAX_LINE_BYTES:,} bytes)",
                number,
            )
        text = self._decode(raw, number) if isinstance(raw, bytes) else raw
        if number == 1:
            text = text.removeprefix(_BOM)
        text = text.rstrip("\r\n")
        control = _CONTROL.search(text)
        if control:
            code = f"U+{ord(control.group()):04X}"
            self._fail(
                f"binary content (control character {code} at column {control.start() + 1})", number
            )
        return text.strip()

    def _decode(self, raw: bytes, number: int) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            byte = raw[err.start]
            self._fail(f"not UTF-8 text (byte 0x{byte:02X} at column {err.start + 1})", number)

    def _header_line(self, text: str) -> bool:
        if text in HEADER_PHRASES:
            return True
        if LISTING_DATE.fullmatch(text):
            self.listing_date = text
            return True
        return False

    def _title_too_long(self, text: str, number: int, previous_title_line: int) -> NoReturn:
        after = (
            f"; is the abstract of the title on line {previous_title_line} missing?"
            if previous_title_line
            else ""
        )
        self._fail(
            f"a title is due but the line has {len(text):,} characters "
            f"(a title has at most {TITLE_MAX}){after}",
            number,
        )

    def _bad_abstract(self, text: str, number: int, title_line: int) -> NoReturn:
        if len(text) < ABSTRACT_MIN:
            self._fail(
                f"the title on line {title_line} has no abstract: this line "
                f"({len(text)} characters) looks like another title",
                number,
            )
        self._fail(f"line far too long for an abstract ({len(text):,} characters)", number)

    def _fail(self, reason: str, number: int) -> NoReturn:
        raise DumpError(reason, source=self.source, line=number)


def title_problem(title: str) -> str | None:
    """Why ``title`` cannot be a paper's title (its length), or None.

    With ``abstract_problem`` and ``entry_problem`` this is the one owner of the
    entry rules: the dump parser words the failure with its line numbers, the
    listing sources (``digest.sources``) skip the item with this reason.
    """
    if not title:
        return "title missing"
    if len(title) > TITLE_MAX:
        return f"title of {len(title):,} characters, over {TITLE_MAX}"
    return None


def abstract_problem(abstract: str) -> str | None:
    """Why ``abstract`` cannot be a paper's abstract (its length), or None."""
    if not abstract:
        return "abstract missing"
    if len(abstract) < ABSTRACT_MIN:
        return f"abstract of {len(abstract)} characters, under {ABSTRACT_MIN}"
    if len(abstract) > ABSTRACT_MAX:
        return f"abstract of {len(abstract):,} characters, over {ABSTRACT_MAX:,}"
    return None


def entry_problem(title: str, abstract: str) -> str | None:
    """Why this pair cannot be an entry, or None: the dump rules, for text that came as fields.

    A dump checks control characters line by line as it reads (``_clean``);
    a source's fields never went through lines, so the same pattern is checked here.
    """
    for name, text in (("title", title), ("abstract", abstract)):
        if text.isprintable():  # no control character, no surrogate: one fast pass
            continue
        control = _CONTROL.search(text)
        if control:
            return f"{name} has a control character (U+{ord(control.group()):04X})"
        surrogate = _SURROGATE.search(text)
        if surrogate:  # JSON can escape one (\ud800); no UTF-8 can encode it
            return f"{name} has a lone surrogate (U+{ord(surrogate.group()):04X})"
    return title_problem(title) or abstract_problem(abstract)


def _unpack_first_title(text: str) -> str:
    """The first title, when a copy glued it to the header's "Subscribe" button."""
    if text.startswith(PACKED_PREFIX) and text not in HEADER_PHRASES:
        return text[len(PACKED_PREFIX) :].strip()
    return text


def _ends_line(raw: bytes | str) -> bool:
    return raw.endswith(b"\n") if isinstance(raw, bytes) else raw.endswith("\n")


@dataclass(frozen=True, slots=True)
class Dump:
    listing_date: str | None
    entries: list[Entry]


def parse(content: bytes | str, source: str = "<dump>") -> Dump:
    """Parse a whole dump held in memory, split into lines as a file reader would."""
    if isinstance(content, str):
        content = content.encode("utf-8", "surrogatepass")
    parser = DumpParser(source)
    entries = list(parser.parse(io.BytesIO(content)))
    return Dump(parser.listing_date, entries)
