"""The companion's pages in any Jupyter server the package is installed in (JupyterHub's learner servers).

``companion serve`` writes the Voila template "companion" itself
(:func:`companion.server.write_template`) and puts it on ``JUPYTER_PATH``. Under
JupyterHub each learner's server is a plain ``jupyterhub-singleuser`` with
Voila's server extension, and nothing sets those. Installing the package from
a wheel puts ``<prefix>/etc/jupyter/jupyter_server_config.d/supervisor-companion.json``
in the environment, which enables this server extension. (An editable install,
``pip install -e .``, installs no data files: there, enable it with
``--ServerApp.jpserver_extensions=companion.jupyter_extension=True``, as
``deploy/jupyterhub_config.py`` does.) When a server starts, it

- writes the template into a folder of its own (removed when the server stops)
  and puts that folder first on ``JUPYTER_PATH``, where Voila's extension looks
  for templates when it loads;
- makes "companion" Voila's template, and loads only the widget manager's
  JupyterLab extensions on its pages, unless the server's configuration says otherwise;
- serves the service worker that keeps the pages' scripts in the browser (``companion-worker.js``);
- compresses the messages on kernel websockets, unless the server's configuration says otherwise.

All extensions are linked before any is loaded, so this works whatever the
order of the extensions' names.

The theme. The template includes ``theme.css``: the course's
``course/theme.css`` when ``COMPANION_COURSE_DIR`` is set (as JupyterHub's
spawner environment sets it), else a neutral one that adds nothing to Voila's
own look. The course's file is linked, not copied, and read at every page
render: nbgitpuller pulls the course into the learner's home *after* their
server has started, and a copy taken at start would miss it (and any later
change to the theme) until the server restarted. While the course's file is
missing the neutral one is used, so a page never fails for want of a theme.
(Voila looks for a template's files under ``voila/templates/companion`` and
then ``nbconvert/templates/companion`` of each Jupyter data folder: the link
sits in the first, the neutral theme in the second.)

Example::

    $ pip install ".[hub]"            # a wheel: installs the server's configuration too
    $ COMPANION_COURSE_DIR=~/leadership jupyter server
    # /voila/render/<notebook> now uses the template "companion" with the course's theme
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from .page_scripts import write_page_scripts

TEMPLATE = "companion"
# The template's own files (index.html.j2, conf.json, companion.js); companion.server uses them too.
TEMPLATE_SOURCE = Path(__file__).parent / "templates" / TEMPLATE
# The JupyterLab extensions a page loads: the widget manager's only (companion serve's too).
PAGE_EXTENSIONS = ("@jupyter-widgets/jupyterlab-manager", "@voila-dashboards/widgets-manager8")
NEUTRAL_THEME = (
    "/* The neutral theme of the Voila template \"companion\": COMPANION_COURSE_DIR is not set, or its\n"
    "   course/theme.css does not exist (yet), so the page keeps Voila's own look. */\n"
)


def _jupyter_server_extension_points():
    return [{"module": "companion.jupyter_extension"}]


def course_theme(course_dir: str | os.PathLike | None) -> Path | None:
    """The course's stylesheet, ``<COMPANION_COURSE_DIR>/course/theme.css``, whether or not it exists yet."""
    if not course_dir:
        return None
    return Path(course_dir).expanduser().absolute() / "course" / "theme.css"


def write_template(root: Path, course_dir: str | os.PathLike | None = None) -> Path:
    """Write the template "companion" under the Jupyter data folder ``root``; returns ``root``.

    ``root/voila/templates/companion`` gets the package's template files and
    ``theme.css``, a link to the course's stylesheet (when there is a course);
    ``root/nbconvert/templates/companion/theme.css`` is the neutral theme Voila
    finds when the link leads nowhere."""
    folder = root / "voila" / "templates" / TEMPLATE
    fallback = root / "nbconvert" / "templates" / TEMPLATE
    folder.mkdir(parents=True, exist_ok=True)
    fallback.mkdir(parents=True, exist_ok=True)
    for source in TEMPLATE_SOURCE.iterdir():
        if source.is_file() and source.name != "theme.css":
            shutil.copyfile(source, folder / source.name)
    write_page_scripts(folder)
    link = folder / "theme.css"
    if link.is_symlink() or link.exists():
        link.unlink()
    theme = course_theme(course_dir)
    if theme is not None:
        link.symlink_to(theme)
    (fallback / "theme.css").write_text(NEUTRAL_THEME, encoding="utf-8")
    return root


def _link_jupyter_server_extension(server_app) -> None:
    """Before any extension loads: the template on ``JUPYTER_PATH``, and Voila's configuration."""
    root = Path(tempfile.mkdtemp(prefix="companion-voila-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    write_template(root, os.environ.get("COMPANION_COURSE_DIR"))
    # Voila reads JUPYTER_PATH when its extension loads, after every extension has been linked.
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(root), *filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep))])
    voila = server_app.config.VoilaConfiguration
    if "template" not in voila:
        voila.template = TEMPLATE
    if "extension_allowlist" not in voila:
        voila.extension_allowlist = list(PAGE_EXTENSIONS)
    server_app.log.info("companion: Voila template %r from %s", voila.template, root)


def _load_jupyter_server_extension(server_app) -> None:
    """Once loaded: the route of the service worker that keeps the pages' scripts compiled, and compressed
    kernel websockets unless the server's configuration says otherwise (:mod:`companion.caching`)."""
    from .caching import WEBSOCKET_COMPRESSION, worker_handler

    server_app.web_app.add_handlers(".*$", [worker_handler(server_app.base_url)])
    if "websocket_compression_options" not in server_app.config.ServerApp:
        server_app.web_app.settings.update(WEBSOCKET_COMPRESSION)
