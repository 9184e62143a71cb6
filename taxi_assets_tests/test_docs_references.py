"""The documentation's references to tests name tests that exist.

docs/fault_tolerance.md names, for each fault, the tests that cause it; the README and the
other docs cite tests too. A test renamed or removed without its docs fails here, rather
than in a reader's search. Recognised: ``test_x.py::test_y``, ``test_x.py``, a bare
``test_y``, and ``test_y...`` (a prefix of a test's name).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "deploy" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TESTS = REPO / "taxi_assets_tests"

_IN_FILE = re.compile(r"\b(test_\w+\.py)(?:::(test_\w+))?")
_BARE = re.compile(r"(?<![:\w])\b(test_\w+)\b(?!\.py)(\.\.\.)?")


def stale_references(text: str, modules: dict[str, str]) -> list[str]:
    """What ``text`` cites that ``modules`` (file name -> source) do not define."""
    every = "\n".join(modules.values())
    stale = []
    for match in _IN_FILE.finditer(text):
        module, name = match.groups()
        if module not in modules:
            stale.append(module)
        elif name and not re.search(rf"\bdef {name}\(", modules[module]):
            stale.append(f"{module}::{name}")
    for match in _BARE.finditer(text):
        name, prefix = match.groups()
        ending = "" if prefix else r"\("
        if not re.search(rf"\bdef {name}{ending}", every):
            stale.append(name + (prefix or ""))
    return sorted(set(stale))


def test_a_stale_reference_is_found() -> None:
    modules = {"test_here.py": "def test_there(x):\n    pass\n"}
    text = (
        "`test_here.py::test_there`, `test_here.py::test_gone`, `test_missing.py`, "
        "test_there, test_the..., test_nowhere, test_nowhere..."
    )
    assert stale_references(text, modules) == [
        "test_here.py::test_gone",
        "test_missing.py",
        "test_nowhere",
        "test_nowhere...",
    ]


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(REPO)))
def test_the_docs_cite_only_tests_that_exist(doc: Path) -> None:
    modules = {path.name: path.read_text() for path in TESTS.glob("*.py")}
    assert stale_references(doc.read_text(), modules) == []
