"""The maths reference is in the repository and the code's citations point into it: every
``docs/maths.md, section N`` names a section that exists, and nothing cites a file outside the repository."""

import re

from run_helpers import REPO

OUTSIDE = "MATH" + ".md"  # the maths notes this reference replaced (spelled so this file does not match)
CITE = re.compile(r"docs/maths\.md,? section (\d+)")


def _sources():
    for folder in ("src", "tests", "benchmarks"):
        yield from (REPO / folder).rglob("*.py")
    yield REPO / "README.md"
    yield REPO / "benchmarks" / "README.md"


def test_every_maths_citation_names_an_existing_section():
    sections = {int(m) for m in re.findall(r"^## (\d+)\. ", (REPO / "docs" / "maths.md").read_text(), re.M)}
    assert sections == set(range(1, len(sections) + 1)) and len(sections) >= 8
    cited = {}
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        assert OUTSIDE not in text, f"{path} cites {OUTSIDE}, which is not in the repository"
        for m in CITE.finditer(text):
            cited.setdefault(int(m.group(1)), []).append(path.name)
    assert len(cited) >= 4  # the kernel, the target, Tweedie and the likelihood are cited from the code
    missing = {k: v for k, v in cited.items() if k not in sections}
    assert not missing, f"citations of sections that do not exist: {missing}"
