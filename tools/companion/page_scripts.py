"""A page's scripts in one file: Voila's front end sent as one response, not as 74.

Every page (the six sessions, the home page, growth and the dashboard) loads
Voila's JupyterLab front end: ``voila-style.js`` in the head, then ``voila.js``,
whose webpack runtime asks for 72 script chunks (``6573.voila.js`` ...), 56 at
once and 16 more once the kernel has answered and the widgets' code is needed.
Each chunk is a request to the server and a script the browser compiles by
itself on its main thread.

The companion's template sends all of it as one script,
``static/page-scripts.js``: ``voila-style.js``, the chunks every page loads, and
``voila.js`` last. A chunk file only registers its modules with the runtime, so
the runtime finds them there and asks for none of them; a chunk a page needs
that is not in the file is asked for as before. On session 1, two rounds of ten
loads each in headless Chromium, old and new code alternately, time to
interactive went from 1.67 and 1.48 s to 1.32 and 1.37 s (median), and the
load event from 0.89 and 0.88 s to 0.66 and 0.68 s.

Which chunks every page loads is recorded in ``page_scripts.json``, for one
build of ``voila.js`` (its SHA-256): nine pages loaded the same 72. When the
installed ``voila.js`` is another build, the file holds ``voila-style.js`` and
``voila.js`` only, a page asks for the chunks one by one as before, and the
server's log says so and what to do.
``tests/test_browser_caching.py`` fails when a page asks for any chunk, and its
message is the record to write for the installed Voila.

Example::

    >>> from companion.page_scripts import write_page_scripts
    >>> write_page_scripts(Path("home/jupyter/voila/templates/companion"))
    72
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

# Where the record of the chunks every page loads is kept, beside this module.
RECORD = Path(__file__).with_name("page_scripts.json")
# The file the template links, under the template's own static folder.
NAME = "page-scripts.js"
STYLE, RUNTIME = "voila-style.js", "voila.js"
STALE = (
    "Voila's scripts go to the pages one by one, not in one file: the installed voila.js ({sha}) is not "
    "the build recorded in {record}. The pages work, a little slower. To send them in one file again, run "
    "the companion's tests (python -m pytest tests/test_browser_caching.py): the one that fails gives the record to write."
)


def voila_static(name: str) -> Path:
    """The installed Voila's static file ``name``, found as Voila's lab template finds it."""
    from voila.paths import collect_static_paths

    for folder in collect_static_paths(["voila", "nbconvert"], "lab"):
        path = Path(folder) / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"Voila's {name} is not in any of its static folders: is Voila installed?")


def recorded_chunks(runtime: bytes) -> list[str]:
    """The chunks every page loads, when ``runtime`` (voila.js) is the build they were recorded for; else none."""
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    if record["voila.js sha256"] != hashlib.sha256(runtime).hexdigest():
        return []
    return record["chunks"]


def write_page_scripts(template: Path) -> int:
    """Write ``<template>/static/page-scripts.js``; returns how many of Voila's chunks it holds (0 when
    the installed voila.js is not the build recorded in ``page_scripts.json``)."""
    runtime = voila_static(RUNTIME).read_bytes()
    chunks = recorded_chunks(runtime)
    if not chunks:
        logging.getLogger(__name__).warning(STALE.format(sha=hashlib.sha256(runtime).hexdigest()[:12], record=RECORD))
    parts = [voila_static(STYLE).read_bytes(), *(voila_static(chunk).read_bytes() for chunk in chunks), runtime]
    folder = template / "static"
    folder.mkdir(parents=True, exist_ok=True)
    # Written whole, then put in place: a server starting beside another never sends half a file.
    partial = folder / f".{NAME}.{os.getpid()}"
    # Each part on lines of its own: a file may end in a comment (//# sourceMappingURL=...).
    partial.write_bytes(b"\n;\n".join(parts) + b"\n")
    partial.replace(folder / NAME)
    return len(chunks)
