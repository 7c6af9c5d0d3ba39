"""SECURITY.md stays true to the test suite.

Every ``tests/<file>.py::<name>`` the document cites must name a test function that
exists (found with ``ast``: nothing is imported); the document must keep citing many
tests, keep every section of its outline, and cite at least one test in every checklist
row it marks as met or partial.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
DOC: Final = ROOT / "SECURITY.md"
#: A cited test: a file under tests/ and a function name (parametrized tests by name).
REFERENCE: Final = re.compile(r"tests/(?P<path>[\w/]+\.py)::(?P<name>\w+)")
#: A parametrized case cited with its id, which the references must not do.
BRACKETED: Final = re.compile(r"tests/[\w/]+\.py::\w+\[")
#: Distinct tests the document must cite at least, so that it cannot be emptied silently.
MIN_REFERENCES: Final = 120
THREAT_MODEL: Final = (
    "## 1. Threat model",
    "### 1.1 What asgi_auth protects",
    "### 1.2 Who we defend against",
    "### 1.3 What asgi_auth assumes",
    "### 1.4 What asgi_auth does not do",
)
#: Each checklist heading, and the fewest distinct tests its section must cite.
CHECKLISTS: Final = {
    "### 2.1 RFC 8725: JSON Web Token Best Current Practices": 30,
    "### 2.2 RFC 6750: Bearer Token Usage": 20,
    "### 2.3 RFC 9068: JWT Profile for OAuth 2.0 Access Tokens": 10,
    "### 2.4 OWASP ASVS 4.0.3": 40,
    "#### V2 Authentication": 5,
    "#### V3 Session management": 5,
    "#### V4 Access control": 5,
    "#### V7 Error handling and logging": 5,
    "#### V9 Communication": 2,
    "#### V13 API and web service": 5,
}
OTHER_SECTIONS: Final = (
    "## 2. Checklists",
    "### 2.5 Gaps",
    "## 3. Reporting a vulnerability",
    "## 4. Hardening checklist for operators",
)
#: The statuses a checklist row may have; the first three need a cited test.
PROVEN: Final = frozenset({"met", "met (configured)", "partial"})
UNPROVEN: Final = frozenset({"not covered", "N/A"})


@cache
def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _lines() -> list[str]:
    return _text().splitlines()


@cache
def _test_functions(path: str) -> frozenset[str] | None:
    """The test functions of a file under tests/ (module level and in classes), or
    None when there is no such file."""
    file = ROOT / "tests" / path
    if not file.is_file():
        return None
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, functions):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(item.name for item in node.body if isinstance(item, functions))
    return frozenset(name for name in names if name.startswith("test"))


def _references(text: str) -> list[tuple[str, str]]:
    return [(m["path"], m["name"]) for m in REFERENCE.finditer(text)]


def _section(heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    lines = _lines()
    start = lines.index(heading)
    level = len(heading) - len(heading.lstrip("#"))
    body: list[str] = []
    for line in lines[start + 1 :]:
        marks = len(line) - len(line.lstrip("#"))
        if 0 < marks <= level and line[marks : marks + 1] == " ":
            break
        body.append(line)
    return "\n".join(body)


def test_every_reference_names_a_test_function() -> None:
    problems = []
    for path, name in sorted(set(_references(_text()))):
        defined = _test_functions(path)
        if defined is None:
            problems.append(f"tests/{path}::{name}: there is no file tests/{path}")
        elif name not in defined:
            problems.append(f"tests/{path}::{name}: tests/{path} defines no test {name!r}")
    assert problems == []


def test_the_document_keeps_citing_many_tests() -> None:
    cited = set(_references(_text()))
    assert len(cited) >= MIN_REFERENCES, f"only {len(cited)} distinct tests are cited"


def test_parametrized_tests_are_cited_by_function_name() -> None:
    assert BRACKETED.findall(_text()) == []


def test_every_section_of_the_outline_is_present() -> None:
    lines = set(_lines())
    wanted = [*THREAT_MODEL, *OTHER_SECTIONS, *CHECKLISTS]
    assert [heading for heading in wanted if heading not in lines] == []


def test_every_checklist_cites_enough_tests() -> None:
    short = {}
    for heading, fewest in CHECKLISTS.items():
        cited = len(set(_references(_section(heading))))
        if cited < fewest:
            short[heading] = cited
    assert short == {}


def test_every_row_marked_met_or_partial_cites_a_test() -> None:
    rows = [
        line
        for line in _section("## 2. Checklists").splitlines()
        if line.startswith("| ") and not line.startswith("| § |")
    ]
    assert len(rows) >= 60
    problems = []
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        if len(cells) != 5:
            problems.append(f"not five cells: {row[:80]}")
            continue
        status, proof = cells[3], cells[4]
        if status not in PROVEN | UNPROVEN:
            problems.append(f"unknown status {status!r}: {row[:80]}")
        elif status in PROVEN and not _references(proof):
            problems.append(f"{status} without a test: {row[:80]}")
    assert problems == []
