"""The syntax of a filter: lexer and parser, the only code that reads what a user typed.

A filter is one line (``diffusion title:"video generation" -survey``).  ``parse`` turns it
into a small immutable tree (``tree``) or raises ``QueryError`` with a caret column; it is
pure.  Everything FTS5 would read as syntax is rejected here, with a message that says
how to write it instead.

After ``category:`` (directly, or in its group) a value is a category as arXiv writes
it, kept whole (``cs.CL``, ``cond-mat.stat-mech``), or a prefix of one (``cs.*``):
``cs.CL`` read as words would be the phrase "cs cl", which no category is made of.
After ``author:`` values are words, phrases and prefixes, as in the text.
"""

import re
from typing import NamedTuple

from digest.errors import QueryError
from digest.query.tree import (
    FIELDS,
    TEXT_FIELDS,
    And,
    FieldName,
    Leaf,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Term,
)
from digest.stemming import words

NEGATION_ONLY = "a filter must include at least one term"
EMPTY = "empty filter: write at least one word"
NEAR = 'NEAR is not supported; use a "phrase"'
UNSUPPORTED = "'{}' is not supported; juxtapose words for AND, use OR, NOT or -"
STRAY_STAR = "'*' must end a word, as in prefix*"
SHORT_PREFIX = "a prefix needs at least 2 characters before '*'"
PREFIX_WORDS = "a prefix must be a single word"
UNKNOWN_FIELD = "':' is only allowed after title, abstract, author or category"
FIELD_TARGET = '{}: must be directly followed by a word, a "phrase" or a (group)'
DASH_TARGET = "'-' must be directly followed by a word, a \"phrase\" or a (group)"
FIELD_CONFLICT = "{}: cannot be used inside {}:"
UNCLOSED_QUOTE = 'unclosed quote: add a closing "'
EMPTY_PHRASE = 'a "phrase" must contain at least one word'
UNCLOSED_PAREN = "unclosed '(': add a closing ')'"
UNMATCHED_PAREN = "unmatched ')'"
EMPTY_GROUP = "empty group '()'"
NO_WORDS = "'{}' contains no letters or digits"
DANGLING = "{} needs a term on each side"
NOT_TARGET = "NOT must be followed by a term"
CATEGORY = "not a category: write one as arXiv does (cs.CL, hep-th) or a prefix (cs.*)"
CATEGORY_QUOTED = "write a category without quotes, as in category:cs.CL"
MAX_DEPTH = 32
TOO_DEEP = f"too deeply nested: at most {MAX_DEPTH} levels of (), NOT, - and fields"


# --- lexer -------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<space>\s+)|(?P<lparen>\()|(?P<rparen>\))|(?P<quote>"[^"]*"?)
    |(?P<field>title:|abstract:|author:|category:)|(?P<colon>:)|(?P<neg>-(?=[^\W_]|["(]))|(?P<bare>[^\s()":]+)""",
    re.VERBOSE,
)
_WORD_CHAR = re.compile(r"[^\W_]")
_UNSUPPORTED_CHAR = re.compile(r"[\^+]")
_NOT_CATEGORY = re.compile(r"[^A-Za-z0-9.\-]")
_OPERATORS = frozenset({"AND", "OR", "NOT"})
_RESERVED = _OPERATORS | {"NEAR"}
_TARGETS = frozenset({"word", "phrase", "prefix", "lparen", "neg", "field"})


class _Token(NamedTuple):
    kind: str  # a _TOKEN group name, "AND"/"OR"/"NOT", or "end"
    start: int
    text: str
    words: tuple[str, ...] = ()


def _lex(query: str) -> list[_Token]:
    """Split the query into tokens, rejecting everything FTS5 would read as syntax."""
    tokens: list[_Token] = []
    opens: list[int] = []
    groups: list[bool] = []  # for each open "(": whether it groups categories
    category = False  # whether a value here is a category: after category:, or in its group
    pending: _Token | None = None  # a "-" or "field:" still waiting for what it applies to
    for match in _TOKEN.finditer(query):
        kind = match.lastgroup or ""
        if kind == "space":
            token = None
        elif category and kind in ("bare", "quote"):
            token = _category(query, match.start(), match.group())
        else:
            token = _classify(query, kind, match, opens)
        if pending is not None and (token is None or token.kind not in _TARGETS):
            raise _unapplied(query, pending)
        if token is not None:
            tokens.append(token)
            pending = token if kind in ("neg", "field") else None
            if kind == "field":
                category = token.text == "category:"
            elif kind == "lparen":
                groups.append(category)
            elif kind != "neg":
                if kind == "rparen":
                    groups.pop()  # _classify has checked that a "(" is open
                category = groups[-1] if groups else False
    if pending is not None:
        raise _unapplied(query, pending)
    if opens:
        raise QueryError(UNCLOSED_PAREN, query=query, column=opens[-1])
    tokens.append(_Token("end", len(query), ""))
    return tokens


def _unapplied(query: str, token: _Token) -> QueryError:
    """A ``-`` or ``field:`` must be glued to what it applies to."""
    reason = DASH_TARGET if token.kind == "neg" else FIELD_TARGET.format(token.text[:-1])
    return QueryError(reason, query=query, column=token.start)


def _classify(query: str, kind: str, match: re.Match[str], opens: list[int]) -> _Token:
    start, text = match.start(), match.group()
    if kind == "bare":
        return _bare(query, start, text)
    if kind == "quote":
        return _phrase(query, start, text)
    if kind == "colon":
        raise QueryError(UNKNOWN_FIELD, query=query, column=start)
    if kind == "lparen":
        opens.append(start)
    elif kind == "rparen":
        if not opens:
            raise QueryError(UNMATCHED_PAREN, query=query, column=start)
        opens.pop()
    return _Token(kind, start, text)


def _phrase(query: str, start: int, text: str) -> _Token:
    if len(text) < 2 or not text.endswith('"'):
        raise QueryError(UNCLOSED_QUOTE, query=query, column=start)
    found = tuple(words(text))
    if not found:
        raise QueryError(EMPTY_PHRASE, query=query, column=start)
    return _Token("phrase", start, text, found)


def _operator(query: str, start: int, text: str) -> _Token | None:
    """AND, OR and NOT as tokens; NEAR refused; None for anything else."""
    if text in _OPERATORS:
        return _Token(text, start, text)
    if text == "NEAR" or text.startswith("NEAR/"):
        raise QueryError(NEAR, query=query, column=start)
    return None


def _category(query: str, start: int, text: str) -> _Token:
    """A category (``cs.CL``) or a prefix of one (``cs.*``), as one case-folded value.

    arXiv's categories are ASCII letters, digits, dots and hyphens; anything else is
    refused with the caret on it, so a typo is not a filter that silently matches nothing.
    """
    if text.startswith('"'):
        raise QueryError(CATEGORY_QUOTED, query=query, column=start)
    operator = _operator(query, start, text)
    if operator is not None:
        return operator
    if text.startswith("-"):
        raise QueryError(DASH_TARGET, query=query, column=start)
    body = text.removesuffix("*")
    bad = _NOT_CATEGORY.search(body)
    if bad is not None or not body:
        at = bad.start() if bad is not None else 0
        reason = STRAY_STAR if text[at] == "*" else CATEGORY
        raise QueryError(reason, query=query, column=start + at)
    if not body[0].isalnum():
        raise QueryError(CATEGORY, query=query, column=start)
    if body == text:
        return _Token("word", start, text, (body.lower(),))
    if len(body) < 2:
        raise QueryError(SHORT_PREFIX, query=query, column=start)
    return _Token("prefix", start, text, (body.lower(),))


def _bare(query: str, start: int, text: str) -> _Token:
    """A run of non-space characters: an operator, a word (maybe hyphenated) or a prefix."""
    operator = _operator(query, start, text)
    if operator is not None:
        return operator
    if text.isascii() and text.isalnum():
        return _Token("word", start, text, (text.lower(),))  # the common case, made cheap
    if text.startswith("-"):
        raise QueryError(DASH_TARGET, query=query, column=start)
    bad = _UNSUPPORTED_CHAR.search(text)
    if bad:
        raise QueryError(UNSUPPORTED.format(bad.group()), query=query, column=start + bad.start())
    star = text.find("*")
    if star < 0:
        found = tuple(words(text))
        if not found:
            raise QueryError(NO_WORDS.format(text), query=query, column=start)
        return _Token("word", start, text, found)
    if star != len(text) - 1 or star == 0 or not _WORD_CHAR.match(text[star - 1]):
        raise QueryError(STRAY_STAR, query=query, column=start + star)
    found = tuple(words(text))
    if len(found) != 1:
        raise QueryError(PREFIX_WORDS, query=query, column=start)
    if len(found[0]) < 2:
        raise QueryError(SHORT_PREFIX, query=query, column=start)
    return _Token("prefix", start, text, found)


# --- parser ------------------------------------------------------------------------------

_STARTS = _TARGETS | {"NOT"}
_FIELD_OF: dict[str, FieldName] = {f"{name}:": name for name in FIELDS}


class _Parser:
    """Recursive descent: or := and (OR and)*; and := unary (AND? unary)*."""

    def __init__(self, query: str, tokens: list[_Token]) -> None:
        self.query = query
        self.tokens = tokens
        self.at = 0
        self.depth = 0
        self.field: FieldName | None = None

    def error(self, reason: str, token: _Token) -> QueryError:
        return QueryError(reason, query=self.query, column=token.start)

    def take(self) -> _Token:
        self.at += 1
        return self.tokens[self.at - 1]

    def either(self) -> Node:
        branches = [self.both()]
        while self.tokens[self.at].kind == "OR":
            self.take()
            branches.append(self.both())
        return _join(Or, branches)

    def both(self) -> Node:
        parts = [self.unary()]
        while (kind := self.tokens[self.at].kind) in _STARTS or kind == "AND":
            if kind == "AND":
                self.take()
            parts.append(self.unary())
        return _join(And, parts)

    def unary(self) -> Node:
        """Nesting is bounded so that deep input is a QueryError, not a RecursionError."""
        token = self.take()
        if token.kind in ("word", "phrase", "prefix"):
            return self.leaf(token)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(TOO_DEEP, token)
        node = self.nested(token)
        self.depth -= 1
        return node

    def nested(self, token: _Token) -> Node:
        if token.kind in ("NOT", "neg"):
            child = self.unary()
            return child.child if isinstance(child, Not) else Not(child)
        if token.kind == "field":
            return self.fielded(token)
        if token.kind == "lparen":
            node = self.either()
            self.take()  # the lexer guarantees the matching ")"
            return node
        raise self.unexpected(token)

    def fielded(self, token: _Token) -> Node:
        name = _FIELD_OF[token.text]
        if self.field not in (None, name):
            raise self.error(FIELD_CONFLICT.format(name, self.field), token)
        outer, self.field = self.field, name
        node = self.unary()
        self.field = outer
        return node

    def leaf(self, token: _Token) -> Leaf:
        """A metadata leaf's text names its field (``author:lecun``), as explanations show it."""
        field = self.field
        text = token.text if field is None or field in TEXT_FIELDS else f"{field}:{token.text}"
        if token.kind == "prefix":
            return Prefix(token.words[0], field, text)
        if len(token.words) == 1:
            return Term(token.words[0], field, text)
        return Phrase(token.words, field, text)

    def unexpected(self, token: _Token) -> QueryError:
        """Name the operator or bracket that is missing its term."""
        before = self.tokens[self.at - 2] if self.at >= 2 else None
        if before is not None and before.kind == "NOT":
            return self.error(NOT_TARGET, before)
        if token.kind in ("AND", "OR"):
            return self.error(DANGLING.format(token.kind), token)
        if before is not None and before.kind in ("AND", "OR"):
            return self.error(DANGLING.format(before.kind), before)
        if before is not None and before.kind == "lparen":
            return self.error(EMPTY_GROUP, before)
        return self.error(EMPTY, token)


def _join(kind: type[And] | type[Or], parts: list[Node]) -> Node:
    """Flatten nested And/Or so trees compare and print simply."""
    flat: list[Node] = []
    for part in parts:
        flat.extend(part.children if isinstance(part, kind) else (part,))
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


def parse(query: str) -> Node:
    """Parse one filter line into a tree; raises only ``QueryError``."""
    chunks = query.split()
    if not chunks:
        raise QueryError(EMPTY, query=query, column=0)
    if all(c.isascii() and c.isalnum() and c not in _RESERVED for c in chunks):
        # Most filters are a few plain words: skip the lexer (100k filters are parsed per run).
        return _join(And, [Term(c.lower(), None, c) for c in chunks])
    tokens = _lex(query)
    parser = _Parser(query, tokens)
    node = parser.either()
    if not _matches_positively(node):
        raise QueryError(NEGATION_ONLY, query=query, column=tokens[0].start)
    return node


def _matches_positively(node: Node) -> bool:
    """False when every way to satisfy ``node`` is by absence (``-video``, ``NOT a NOT b``)."""
    if isinstance(node, And | Or):
        return any(_matches_positively(child) for child in node.children)
    return not isinstance(node, Not)
