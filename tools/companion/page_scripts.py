"""A page's front end: the companion's own, in one script and one stylesheet.

Every page (the six sessions, the home page, growth and the dashboard) is a
Voila page: Voila runs the notebook and sends its text as HTML, and a script in
the browser draws the widgets. Voila's own script starts a whole JupyterLab
application (its plugins, theme manager and extension loader: 3.9 MB in 74
files) before it draws the first widget. The companion's template links its
own instead, built from ``tools/frontend`` (``src/page.js``: connect to the
page's kernel, ask it for the widgets' states, draw each output with the same
ipywidgets code JupyterLab uses), shipped in this package as
``frontend/page-scripts.js`` (1.4 MB, 0.4 MB gzipped) and
``frontend/page-scripts.css`` (the widgets' stylesheet).

On session 1 (12 loads each, localhost, in random order) time to interactive,
as the page notes it, went from 1.13 s with Voila's front end to 0.82 s with
this one (README, *Performance*).

Example::

    >>> from companion.page_scripts import write_page_scripts
    >>> write_page_scripts(Path("home/jupyter/voila/templates/companion"))
    ['page-scripts.js', 'page-scripts.css']
"""

from __future__ import annotations

import os
from pathlib import Path

# The built front end, beside this module (tools/frontend/build.mjs writes it).
BUILT = Path(__file__).with_name("frontend")
# The script the template links, under the template's own static folder, and its stylesheet.
NAME = "page-scripts.js"
STYLESHEET = "page-scripts.css"


def write_page_scripts(template: Path) -> list[str]:
    """Copy the front end into ``<template>/static``; returns the names of the files written."""
    folder = template / "static"
    folder.mkdir(parents=True, exist_ok=True)
    for name in (NAME, STYLESHEET):
        # Written whole, then put in place: a server starting beside another never sends half a file.
        partial = folder / f".{name}.{os.getpid()}"
        partial.write_bytes((BUILT / name).read_bytes())
        partial.replace(folder / name)
    return [NAME, STYLESHEET]
