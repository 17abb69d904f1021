"""Wheel build hook: make sure static/vendor exists before the wheel copies `static/`.

`pip install .` from a fresh clone has no static/vendor (it is git-ignored), so the hook runs
`npm ci && npm run build` when it is missing. Without npm it fails loudly instead of shipping
a dashboard whose pages cannot update.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class VendorAssetsHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        # An editable install serves static/ from the work tree; the Makefile builds it there.
        if version == "editable" or (root / "static" / "vendor" / ".built").exists():
            return
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(
                "static/vendor is missing and npm is not on PATH: run `npm ci && npm run build`"
            )
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=root, check=True)
        subprocess.run([npm, "run", "build"], cwd=root, check=True)
