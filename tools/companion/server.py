"""The learner server: Voila on the released session pages, configured from course.toml.

``serve`` releases the sessions if a source changed, then starts Voila on the
site folder with preheated kernels (a page opens without waiting for Python to
start), culling of idle kernels, a ``frame-ancestors`` policy so Canvas may
frame the pages (with ``https = true``, cookies marked ``SameSite=None; Secure``
so browsers keep them inside Canvas's iframe), and ``/`` redirecting to the
learner's home page (the query string, and so a personal link, is kept).

The same configuration is written to ``<home>/voila.json`` for deployments that
start Voila themselves (under JupyterHub the headers go in the single-user
server's ``ServerApp.tornado_settings`` instead).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from tornado import web

from .errors import SettingsError
from .release import is_stale, release, site_dir
from .settings import COURSE_FILE, Settings
from .store import open_store

HOME_PAGE = "voila/render/home.ipynb"
TEMPLATE = "companion"
# The template's own files (index.html.j2, conf.json, companion.js); course/theme.css joins them.
TEMPLATE_SOURCE = Path(__file__).parent / "templates" / TEMPLATE


# The JupyterLab extensions a session page loads: ipywidgets' manager and Voila's for ipywidgets 8.
PAGE_EXTENSIONS = ("@jupyter-widgets/jupyterlab-manager", "@voila-dashboards/widgets-manager8")

# A CSP host source: [scheme://][*.]host[:port]. No quotes (CSP quotes keywords only), spaces, ';' or paths.
FRAME_SOURCE = re.compile(r"^(https?://)?(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:(\d{1,5}|\*))?$")
# Cookie attributes a browser needs to send a cookie inside a third-party iframe (Canvas framing the page).
THIRD_PARTY_COOKIE = {"samesite": "None", "secure": True}


def content_security_policy(settings: Settings) -> str:
    """``frame-ancestors 'self' <hosts>``: CSP quotes keywords, never hosts.

    A host written with quotes or extra words would silently make browsers refuse
    every frame, so such an entry is an error that names it."""
    for source in settings.server.frame_ancestors:
        if not isinstance(source, str) or not FRAME_SOURCE.match(source):
            raise SettingsError(
                f"{COURSE_FILE} [server] frame_ancestors has {source!r}, which is not a host. Write each "
                'Canvas address as an origin without quotes inside the string or a path, e.g. "https://canvas.example.edu".'
            )
    return " ".join(["frame-ancestors", "'self'", *settings.server.frame_ancestors])


def voila_config(settings: Settings, port: int, host: str = "127.0.0.1") -> dict:
    """Voila's traitlets configuration, generated from course.toml."""
    pool = max(settings.server.preheated_kernels, 0)
    tornado_settings: dict = {"headers": {"Content-Security-Policy": content_security_policy(settings)}}
    config = {
        "Voila": {
            "ip": host,
            "port": port,
            "open_browser": False,
            "root_dir": str(site_dir(settings)),
            "tornado_settings": tornado_settings,
        },
        "VoilaConfiguration": {
            "template": TEMPLATE,
            "preheat_kernel": pool > 0,
            "default_pool_size": pool,
            "progressive_rendering": False,
            "show_tracebacks": False,
            # The pages need only the widget manager; the other installed JupyterLab extensions
            # (nbgrader's, Notebook's, pygments') would be fetched and run on every page load.
            "extension_allowlist": list(PAGE_EXTENSIONS),
        },
        "MappingKernelManager": {
            "cull_idle_timeout": settings.server.cull_idle_seconds,
            "cull_interval": 60,
            "cull_connected": False,
        },
        # Kernels talk to the server over Unix sockets named after each kernel. Over TCP, kernels
        # started at once (learners arriving together) can be handed the same free port: that
        # kernel dies, and its learner's page never arrives. (Nor is local TCP encrypted.)
        "KernelManager": {"transport": "ipc"},
    }
    if settings.server.https:
        # Framed by Canvas, the page is third-party: browsers send its cookies (the _xsrf
        # token and the login cookie) only if they are SameSite=None; Secure, and Secure needs HTTPS.
        tornado_settings["xsrf_cookie_kwargs"] = dict(THIRD_PARTY_COOKIE)
        config["IdentityProvider"] = {"cookie_options": dict(THIRD_PARTY_COOKIE)}
    return config


def write_template(settings: Settings) -> Path:
    """The Voila template "companion": Voila's lab template, course/theme.css and the page script.

    Returns the folder to put on ``JUPYTER_PATH`` so Voila finds it."""
    jupyter = settings.home / "jupyter"
    folder = jupyter / "voila" / "templates" / TEMPLATE
    folder.mkdir(parents=True, exist_ok=True)
    for source in TEMPLATE_SOURCE.iterdir():
        shutil.copyfile(source, folder / source.name)
    theme = settings.root / "course" / "theme.css"
    (folder / "theme.css").write_text(theme.read_text(encoding="utf-8") if theme.exists() else "", encoding="utf-8")
    return jupyter


def kernel_environment(settings: Settings, mode: str) -> dict[str, str]:
    """What every kernel inherits: where the course and data are, and how learners are identified."""
    return {
        "COMPANION_COURSE_DIR": str(settings.root),
        "COMPANION_HOME": str(settings.home),
        "COMPANION_DB_URL": settings.db_url,
        "COMPANION_IDENTITY": mode,
    }


class HomeRedirect(web.RequestHandler):
    def get(self) -> None:
        query = self.request.query
        self.redirect(self.settings.get("base_url", "/") + HOME_PAGE + (f"?{query}" if query else ""))

    head = get


def _voila_class():
    from voila.app import Voila

    class CompanionVoila(Voila):
        """Voila with the home page at ``/``."""

        def init_handlers(self):
            return [(self.server_url, HomeRedirect), *super().init_handlers()]

    return CompanionVoila


def prepare(settings: Settings, progress: Callable | None = None) -> None:
    """Everything a server needs before it starts: the schema and the released pages."""
    open_store(settings.db_url)
    if is_stale(settings):
        release(settings, progress)


def serve(settings: Settings, port: int = 8866, mode: str = "local", host: str = "127.0.0.1") -> None:
    """Start the learner server and block until it is stopped."""
    from traitlets.config import Config

    config = voila_config(settings, port, host)
    (settings.home / "voila.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.environ.update(kernel_environment(settings, mode))
    jupyter_path = [str(write_template(settings)), *filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep))]
    os.environ["JUPYTER_PATH"] = os.pathsep.join(jupyter_path)
    _voila_class().launch_instance(argv=[], config=Config(config))
