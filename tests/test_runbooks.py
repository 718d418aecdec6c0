"""docs/runbooks.md: one section per alert, and every alert links its section."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RUNBOOKS = REPO / "docs" / "runbooks.md"
PARTS = ("**Means.**", "**Impact.**", "**Diagnose.**", "**Fix.**", "**Escalate.**")


def sections() -> dict[str, str]:
    text = RUNBOOKS.read_text(encoding="utf-8")
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load((REPO / "prometheus" / "alerts.yml").read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def test_every_alert_has_a_section_and_every_section_an_alert() -> None:
    alerts, documented = set(rules()), set(sections())
    assert alerts - documented == set(), "alerts without a runbook section"
    assert documented - alerts == set(), "runbook sections without an alert"


def test_every_section_says_what_to_do() -> None:
    for name, body in sections().items():
        for part in PARTS:
            assert part in body, f"{name} lacks {part}"
        diagnose = body.split("**Diagnose.**", 1)[1].split("**Fix.**", 1)[0]
        assert re.search(r"`[^`]*\b(cph_[a-z_]+|up)\b[^`]*`", diagnose), f"{name}: no PromQL"


def test_every_alert_links_its_section() -> None:
    anchors = {github_anchor(heading): heading for heading in sections()}
    for name, rule in rules().items():
        url = rule["annotations"].get("runbook_url", "")
        base, _, anchor = url.partition("#")
        assert base.endswith("docs/runbooks.md"), (name, url)
        assert anchors.get(anchor) == name, (name, url)


def test_the_readme_links_the_runbooks() -> None:
    assert "docs/runbooks.md" in (REPO / "README.md").read_text(encoding="utf-8")


def test_the_alerts_table_lists_every_alert() -> None:
    table = (REPO / "docs" / "alerts.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(Cph\w+)` \|", table, flags=re.M))
    assert listed == set(rules())
