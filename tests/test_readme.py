"""The README is where a newcomer looks first: its layout table names every module."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "digest"


def modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(PACKAGE))
        if name in ("__init__.py", "__main__.py"):
            continue
        names.append(name.removesuffix("__init__.py"))
    return names


@pytest.mark.parametrize("module", modules())
def test_every_module_has_a_line_in_the_readme_layout(module: str) -> None:
    assert f"| `{module}` |" in (ROOT / "README.md").read_text(encoding="utf-8")
