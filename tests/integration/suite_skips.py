"""Every skip printed with its reason, and checked against tests/skip-allowlist.txt.

The allowlist holds one entry a line, `MODE PATTERN  # why it may skip`: MODE is `spate` (the
run against Spate), `reference` (the run against Kafka) or `any`; PATTERN is an fnmatch
pattern of the test's node id (tests/integration/test_x.py::test_y[param]); blank lines and
lines starting with # are comments. In the reference run, a skip of a `spate_only` test is
always allowed (its reason starts with SPATE_ONLY); in the Spate run such a test never skips.
"""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

SPATE_ONLY = "spate-only: "
_SKIPPED: list[tuple[str, str]] = []  # (node id, reason)


def record(report):
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    _SKIPPED.append((_node_id(report.nodeid), reason))


def _node_id(nodeid: str) -> str:
    """The id relative to the repository root, whatever directory pytest ran from."""
    i = nodeid.find("tests/integration/")
    if i > 0:
        return nodeid[i:]
    return nodeid if nodeid.startswith("tests/") else f"tests/integration/{nodeid}"


def load(path: str) -> list[tuple[str, str]]:
    entries = []
    for n, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        mode, _, pattern = line.partition(" ")
        assert mode in ("spate", "reference", "any") and pattern.strip(), \
            f"{path}:{n}: expected `spate|reference|any PATTERN  # why`, got {raw!r}"
        assert "#" in raw, f"{path}:{n}: an entry must say why it may skip (a # comment)"
        entries.append((mode, pattern.strip()))
    return entries


def allowed(nodeid: str, reason: str, entries, reference: bool) -> bool:
    if reference and reason.startswith(SPATE_ONLY):
        return True
    mode_ok = ("any", "reference") if reference else ("any", "spate")
    return any(mode in mode_ok and fnmatch(nodeid, pattern) for mode, pattern in entries)


def unexpected(config, reference: bool) -> list[tuple[str, str]]:
    path = config.getoption("--skip-allowlist")
    if not path:
        return []
    entries = load(path)
    return [(n, r) for n, r in _SKIPPED if not allowed(n, r, entries, reference)]


def summary(tr, config, reference: bool):
    mode = "reference (Apache Kafka)" if reference else "spate"
    tr.section(f"skipped tests ({len(_SKIPPED)}, {mode} run)")
    for nodeid, reason in _SKIPPED:
        tr.write_line(f"SKIPPED {nodeid} -- {reason}")
    bad = unexpected(config, reference)
    if config.getoption("--skip-allowlist"):
        if bad:
            tr.write_line(f"UNEXPECTED SKIPS ({len(bad)}), not in {config.getoption('--skip-allowlist')}:",
                          red=True)
            for nodeid, reason in bad:
                tr.write_line(f"  {nodeid} -- {reason}", red=True)
        else:
            tr.write_line("unexpected skips: 0")
