"""The companion's page front end as shipped (tools/companion/frontend) is built from its sources
(tools/frontend): each built file names the SHA-256 of the sources it was built from, and those
are the sources in the repository. A change to src/ or to the packages without
`npm ci && npm run build` in tools/frontend fails here, on a machine without Node."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from companion.page_scripts import BUILT, NAME, STYLESHEET

FRONTEND = Path(__file__).resolve().parents[1] / "tools" / "frontend"


def sources() -> list[str]:
    """The sources build.mjs hashes, in its order (its ``SOURCES``)."""
    listed = re.search(r"const SOURCES = \[([^\]]*)\];", (FRONTEND / "build.mjs").read_text(encoding="utf-8"))
    return re.findall(r"'([^']+)'", listed.group(1))


def test_every_source_of_the_front_end_is_hashed_into_what_is_built():
    in_src = sorted(str(path.relative_to(FRONTEND)) for path in (FRONTEND / "src").rglob("*") if path.is_file())
    assert sorted(name for name in sources() if name.startswith("src/")) == in_src
    assert "package-lock.json" in sources(), "the packages' exact versions are part of what is built"


def test_the_shipped_front_end_is_built_from_the_sources_in_the_repository():
    digest = hashlib.sha256()
    for name in sources():
        digest.update((FRONTEND / name).read_bytes())
    for built in (NAME, STYLESHEET):
        first_line = (BUILT / built).read_text(encoding="utf-8").split("\n", 1)[0]
        named = re.search(r"SHA-256 ([0-9a-f]{64})", first_line)
        assert named, f"{built} does not say what it was built from: was it written by tools/frontend/build.mjs?"
        assert named.group(1) == digest.hexdigest(), (
            f"tools/companion/frontend/{built} was built from other sources than tools/frontend's: "
            "run `npm ci && npm run build` in tools/frontend and commit what it writes"
        )


def test_the_front_end_uses_the_widget_packages_of_the_installed_ipywidgets():
    import ipywidgets

    locked = json.loads((FRONTEND / "package-lock.json").read_text(encoding="utf-8"))["packages"]
    # ipywidgets 8 names its models' modules @jupyter-widgets/controls 2.x and base 2.x, which the
    # JavaScript packages @jupyter-widgets/controls 5.x and base 6.x provide.
    assert ipywidgets.__version__.startswith("8.")
    assert ipywidgets._version.__jupyter_widgets_controls_version__.startswith("2.")
    assert locked["node_modules/@jupyter-widgets/controls"]["version"].startswith("5.")
    assert locked["node_modules/@jupyter-widgets/base"]["version"].startswith("6.")
