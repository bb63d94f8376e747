"""The newest digest in a Maildir, as an HTML file to open in a browser.

``make run`` files its digests into a local Maildir (the default transport); at the
end, ``latest_html`` writes the HTML part of the newest one to a file and the CLI
prints its ``file://`` link.  It reads the messages and never moves or changes them.
"""

import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

_MAILDIR_NAME = re.compile(r"^(\d+)\.M(\d+)P\d+Q(\d+)\.")


def latest_html(maildir: Path, target: Path) -> Path | None:
    """Write the HTML part of the newest message that has one to ``target``; None if none.

    ``make run`` uses it to say which file to open in a browser.  The part is
    written decoded but in its own charset, so its ``<meta charset>`` stays true.
    """
    for path in sorted(_messages(maildir), key=_delivered_at, reverse=True):
        html = _html_part(path.read_bytes())
        if html is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.tmp")
            partial.write_bytes(html)
            partial.replace(target)
            return target
    return None


def _messages(maildir: Path) -> list[Path]:
    found: list[Path] = []
    for sub in ("new", "cur"):
        folder = maildir / sub
        if folder.is_dir():
            found.extend(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return found


def _delivered_at(path: Path) -> tuple[int, int]:
    """Delivery time from the Maildir file name (microseconds, then counter); else mtime."""
    match = _MAILDIR_NAME.match(path.name)
    if match:
        return int(match[1]) * 1_000_000 + int(match[2]), int(match[3])
    return path.stat().st_mtime_ns // 1000, 0


def _html_part(raw: bytes) -> bytes | None:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("html",))
    if part is None:
        return None
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else None
