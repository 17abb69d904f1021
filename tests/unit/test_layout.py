"""README's Layout section names what is in the tree, so a reader finds every module from it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def layout() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block, "README's Layout section has no code block"
    return block.group(1)


def test_every_top_level_folder_of_the_repository_is_in_the_layout() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    folders = {line.split("/", 1)[0] for line in tracked.stdout.splitlines() if "/" in line}
    folders -= {".ci"}
    text = layout()
    missing = sorted(f for f in folders if not re.search(rf"(^|\s){re.escape(f)}/", text))
    assert missing == []


def test_every_module_of_the_dashboard_and_the_collectors_is_named() -> None:
    text = layout()
    modules = [
        p
        for folder in ("dashboard", "collectors")
        for p in (REPO / folder).rglob("*.py")
        if p.name != "__init__.py"
    ]
    missing = sorted(str(p.relative_to(REPO)) for p in modules if p.name not in text)
    assert missing == []
