"""The learner server: Voila on the released session pages, configured from course.toml.

``serve`` releases the sessions if a source changed, then starts Voila on the
site folder with preheated kernels (a page opens without waiting for Python to
start), culling of idle kernels, a ``frame-ancestors`` policy so Canvas may
frame the pages (with ``https = true``, cookies marked ``SameSite=None; Secure``
so browsers keep them inside Canvas's iframe), and friendly addresses
(:mod:`companion.paths`): ``/`` is the learner's home page, ``/session/<n>``
session n's workbook and ``/dashboard`` the facilitator dashboard. Each is
Voila's own page handler given the released notebook's name, so the query
string (a personal link's token) reaches the page's kernel and the preheated
kernels are used, exactly as at ``/voila/render/<file>``, which keeps working.

The same configuration is written to ``<home>/voila.json`` for deployments that
start Voila themselves (under JupyterHub the headers go in the single-user
server's ``ServerApp.tornado_settings`` instead).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from html import escape
from pathlib import Path
from typing import Callable

from tornado import web

from . import identity, paths
from .admission import Admission, Refused
from .caching import WEBSOCKET_COMPRESSION, cached_handlers, gzipped, static_version, versioned_page_config
from .errors import SettingsError
from .identity import HUB_SERVICE
# The template "companion" (index.html.j2, conf.json, companion.js; course/theme.css joins them) and the
# JupyterLab extensions a page loads, the same as in every learner's server under JupyterHub.
from .jupyter_extension import PAGE_EXTENSIONS, TEMPLATE, TEMPLATE_SOURCE
from .page_scripts import NAME as PAGE_SCRIPTS, write_page_scripts
from .release import is_stale, release, site_dir
from .rendering import share_compiled_templates
from .settings import COURSE_FILE, Settings, load_settings
from .store import open_store, writer

# A learner's personal link opens the home page (``/``) with their token.
HOME_PAGE = paths.HOME_PATH

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
    limits = settings.server
    pool = max(limits.preheated_kernels, 0)
    # Each page keeps `pool` kernels ready (a session may ask for its own number, e.g. more for the one
    # a cohort opens live), refilled the moment one is taken rather than a second later.
    pools = {"default": {"pool_size": pool}}
    pools.update({s.page: {"pool_size": s.preheated_kernels} for s in settings.sessions if s.preheated_kernels is not None})
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
            "preheat_kernel": any(p["pool_size"] > 0 for p in pools.values()),
            "default_pool_size": pool,
            "progressive_rendering": False,
            "show_tracebacks": False,
            "multi_kernel_manager_class": "companion.kernels.CompanionKernelManager",
            # The pages need only the widget manager; the other installed JupyterLab extensions
            # (nbgrader's, Notebook's, pygments') would be fetched and run on every page load.
            "extension_allowlist": list(PAGE_EXTENSIONS),
        },
        # Closed pages' kernels stop after closed_page_seconds; open pages idle past
        # pause_idle_seconds are paused (companion.kernels).
        "MappingKernelManager": {
            "cull_idle_timeout": limits.closed_page_seconds,
            "cull_interval": max(2, min(60, limits.closed_page_seconds // 4)),
            "cull_connected": False,
        },
        "CompanionKernelManager": {"pause_idle_seconds": limits.pause_idle_seconds, "kernel_pools_config": pools, "fill_delay": 0},
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
    if limits.kernel_start == "fork":
        from .forking import use_forking

        config = use_forking(config)
    return config


def write_template(settings: Settings) -> Path:
    """The Voila template "companion": Voila's lab template, course/theme.css and the page script.

    Returns the folder to put on ``JUPYTER_PATH`` so Voila finds it."""
    jupyter = settings.home / "jupyter"
    folder = jupyter / "voila" / "templates" / TEMPLATE
    folder.mkdir(parents=True, exist_ok=True)
    for source in TEMPLATE_SOURCE.iterdir():
        shutil.copyfile(source, folder / source.name)
    write_page_scripts(folder)
    theme = settings.root / "course" / "theme.css"
    (folder / "theme.css").write_text(theme.read_text(encoding="utf-8") if theme.exists() else "", encoding="utf-8")
    return jupyter


def compress_page_scripts() -> None:
    """Gzip the pages' one script file (1.4 MB, :mod:`companion.page_scripts`) now, not while the first
    learner to arrive waits for it (0.1 s), at the path Voila will find it (``JUPYTER_PATH`` set)."""
    from voila.static_file_handler import TemplateStaticFileHandler

    gzipped(TemplateStaticFileHandler.get_absolute_path("", f"{TEMPLATE}/static/{PAGE_SCRIPTS}"))


def kernel_environment(settings: Settings, mode: str) -> dict[str, str]:
    """What every kernel inherits: where the course and data are, how learners are identified,
    and IPython's folder for the pages' kernels (:func:`write_kernel_profile`)."""
    return {
        "COMPANION_COURSE_DIR": str(settings.root),
        "COMPANION_HOME": str(settings.home),
        "COMPANION_DB_URL": settings.db_url,
        "COMPANION_IDENTITY": mode,
        "IPYTHONDIR": str(kernel_ipython_dir(settings)),
    }


KERNEL_PROFILE = """\
# Written by companion serve, for the pages' kernels (companion.server.write_kernel_profile).
# No command history: IPython would otherwise append every cell of every page opened to one
# database file, which grows without end and which every kernel starting writes to.
c.HistoryManager.enabled = False
# No %%bash, %%perl, %%ruby... cell magics: no page runs one, and making them is a tenth of a kernel's start.
c.ScriptMagics.script_magics = []
"""


def kernel_ipython_dir(settings: Settings) -> Path:
    """IPython's folder for the pages' kernels: ``<home>/ipython``."""
    return settings.home / "ipython"


def write_kernel_profile(settings: Settings) -> Path:
    """IPython's folder for the pages' kernels, ``<home>/ipython``, with their configuration; returns it.

    A page's kernel runs the session's cells, never a person's commands, so it
    keeps no command history. Left to IPython's default folder (``~/.ipython``)
    each page opened added the whole session's code to one history database
    (13 KB a page; 31 MB after a day of this project's tests)."""
    folder = kernel_ipython_dir(settings)
    profile = folder / "profile_default"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "ipython_kernel_config.py").write_text(KERNEL_PROFILE, encoding="utf-8")
    return folder


def page_routes(settings: Settings) -> dict[str, str]:
    """The notebook file each friendly path renders: ``""`` home, ``session/<n>``, ``dashboard``."""
    routes = {paths.HOME_PATH: paths.HOME_NOTEBOOK, paths.DASHBOARD_PATH: paths.DASHBOARD_NOTEBOOK}
    routes[paths.GROWTH_PATH] = paths.GROWTH_NOTEBOOK
    routes.update({paths.session_path(session): session.page for session in settings.sessions})
    return routes


def message_page(settings: Settings, heading: str, body: str) -> str:
    """A short page of the server's own (no kernel): ``heading`` and ``body`` (HTML, already escaped)."""
    heading = escape(heading)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{heading} — {escape(settings.title)}</title><style>{MESSAGE_CSS}</style></head>"
        f"<body><main><h1>{heading}</h1>{body}</main></body></html>\n"
    )


def unknown_session_page(settings: Settings, asked: str, query: str = "", base_url: str = "/") -> str:
    """The 404 page for ``/session/<asked>``: which sessions exist, each linked, and the way home.

    The links keep the learner's personal token from ``query``."""
    suffix = escape(paths.token_query(query))
    base = escape(base_url if base_url.endswith("/") else base_url + "/")
    items = "".join(
        f'<li><a href="{base}{paths.session_path(s)}{suffix}">Session {s.number}: {escape(s.title)}</a></li>'
        for s in settings.sessions
    )
    numbers = [s.number for s in settings.sessions]
    if len(numbers) == 1:
        known = f"one session, session {numbers[0]}"
    elif len(numbers) > 2 and numbers == list(range(numbers[0], numbers[0] + len(numbers))):
        known = f"sessions {numbers[0]} to {numbers[-1]}"
    else:
        known = "sessions " + ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"
    heading = f"There is no session {asked}" if asked else "Which session?"
    return message_page(
        settings,
        heading,
        f"<p>{escape(settings.title)} has {known}:</p><ul>{items}</ul>"
        f'<p><a href="{base}{suffix}">Go to my sessions</a></p>',
    )


MESSAGE_CSS = (
    "body{font-family:system-ui,sans-serif;font-size:1.05rem;line-height:1.5;color:#1f2328;margin:2rem}"
    "main{max-width:44rem}a{color:#1d4f91;text-decoration:underline}"
    "a:focus-visible{outline:3px solid #bf5700;outline-offset:2px}li{margin:0.3rem 0}"
)


class _OwnerRecorder:
    """The kernel manager as one page request sees it: each kernel it is given is recorded as ``username``'s."""

    def __init__(self, manager, username: str):
        self._manager = manager
        self._username = username

    def __getattr__(self, name):
        return getattr(self._manager, name)

    async def get_rendered_notebook(self, *args, **kwargs):
        """Take a ready kernel. Voila gives the kernel that replaces it this request's URL, which
        holds this learner's personal link, in its environment; that kernel will serve someone else."""
        kwargs["extra_kernel_env_variables"] = {}
        if hasattr(self._manager, "taking"):
            self._manager.taking(kwargs.get("notebook_name") or args[0])
        task, cache, kernel_id = await self._manager.get_rendered_notebook(*args, **kwargs)
        self._manager.record_owner(kernel_id, self._username)
        return task, cache, kernel_id

    async def start_kernel(self, *args, **kwargs):
        from jupyter_server.utils import ensure_async

        kernel_id = await ensure_async(self._manager.start_kernel(*args, **kwargs))
        self._manager.record_owner(kernel_id, self._username)
        return kernel_id


def _page_handler():
    from jupyter_server.utils import url_path_join
    from voila.tornado.handler import TornadoVoilaHandler

    class CompanionPage(TornadoVoilaHandler):
        """Voila's page handler for the course's own pages, behind :mod:`companion.admission`.

        ``path`` is a friendly path (``session/2``) or, at ``/voila/render/``, a page's
        file name. A request the admission refuses gets a short page and no kernel;
        unknown session numbers get a 404 page that lists the sessions."""

        def initialize(self, **kwargs):
            self.routes: dict[str, str] = kwargs.pop("routes")
            self.course: Settings = kwargs.pop("course")
            self.admission = kwargs.pop("admission")
            self._username: str | None = None
            super().initialize(**kwargs)

        @property
        def kernel_manager(self):
            manager = self.settings["kernel_manager"]
            if self._username and hasattr(manager, "record_owner"):
                return _OwnerRecorder(manager, self._username)
            return manager

        def _short_page(self, status: int, html: str) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.set_header("Cache-Control", "no-cache, no-store, must-revalidate")
            self.finish(html)

        def address(self) -> str:
            """The requesting address; behind a proxy (``[server] behind_proxy``), the one it forwarded."""
            if self.course.server.behind_proxy:
                forwarded = self.request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
                return forwarded or self.request.headers.get("X-Real-Ip", "") or self.request.remote_ip
            return self.request.remote_ip

        @web.authenticated
        async def get(self, path: str = ""):
            route = path.strip("/")
            notebook = self.routes.get(route)
            if notebook is None and route in self.routes.values():
                notebook = route
            if notebook is None:
                asked = route.removeprefix("session").strip("/")
                self._short_page(404, unknown_session_page(self.course, asked, self.request.query, self.base_url))
                return
            if self.admission.mode == HUB_SERVICE and notebook == paths.DASHBOARD_NOTEBOOK and not identity.token_from_query(
                self.request.query, identity.FACILITATOR_PARAMETER
            ):
                self.redirect(url_path_join(self.base_url, "hub-login"))  # the hub's login first (companion.hub.service)
                return
            answer = self.admission.check(notebook, self.request.query, self.address(), self.settings["kernel_manager"])
            if isinstance(answer, Refused):
                if answer.retry_after:
                    self.set_header("Retry-After", str(answer.retry_after))
                self.log.info("Refused %s (%s) to %s: %s", route or "/", answer.status, self.address(), answer.heading)
                self._short_page(answer.status, message_page(self.course, answer.heading, f"<p>{escape(answer.message)}</p>"))
                return
            self._username = answer.username
            manager = self.settings["kernel_manager"]
            if answer.username and hasattr(manager, "stop_closed_pages"):
                manager.stop_closed_pages(answer.username)  # in the background: the page does not wait
            counts = hasattr(manager, "page_making")  # pages being made put off the pools' refills
            if counts:
                manager.page_making()
            try:
                await super().get(notebook)
            finally:
                if counts:
                    manager.page_made()

    return CompanionPage


def _paused_handler():
    from jupyter_server.base.handlers import APIHandler

    class PausedKernel(APIHandler):
        """``{"paused": true}`` when this server paused the kernel (its page was left idle), so the page can say so."""

        @web.authenticated
        def get(self, kernel_id: str):
            manager = self.settings["kernel_manager"]
            paused = bool(getattr(manager, "was_paused", lambda _: False)(kernel_id))
            self.set_header("Cache-Control", "no-store")
            self.finish(json.dumps({"paused": paused}))

    return PausedKernel


def _voila_class(settings: Settings | None = None, extra: Callable[[str], list] | None = None):
    from jupyter_server.utils import url_path_join
    from voila.app import Voila

    class CompanionVoila(Voila):
        """Voila with the friendly paths: ``/`` home, ``/session/<n>`` a session, ``/dashboard``."""

        def init_handlers(self):
            handlers = super().init_handlers()
            course = settings or load_settings()
            # The same arguments Voila gives its own /voila/render/ handler (template paths, config).
            render = next(h[2] for h in handlers if h[0] == url_path_join(self.server_url, r"/voila/render/(.*)"))
            admission = Admission(course, os.environ.get("COMPANION_IDENTITY", "local"))
            arguments = {**render, "routes": page_routes(course), "course": course, "admission": admission}
            page = _page_handler()
            render_path = url_path_join(self.server_url, r"/voila/render/(.*)")
            ours = [
                (self.server_url, page, arguments),
                (url_path_join(self.server_url, r"/(dashboard)/?"), page, arguments),
                (url_path_join(self.server_url, r"/(growth)/?"), page, arguments),
                (url_path_join(self.server_url, r"/(session/[^/]*)/?"), page, arguments),
                (render_path, page, arguments),
                (url_path_join(self.server_url, r"/companion/paused/([0-9a-f-]{1,64})"), _paused_handler()),
            ]
            # Voila's own "/" handler (the file tree) is replaced by the home page, its /voila/render/
            # by the same admission-checked page handler, and its /voila/tree pages are dropped:
            # they listed every page, the dashboard included, to anyone.
            tree = url_path_join(self.server_url, "/voila/tree")
            replaced = (self.server_url, render_path)
            kept = [h for h in handlers if h[0] not in replaced and not h[0].startswith(tree)]
            ours += extra(self.server_url) if extra else []
            return ours + cached_handlers(kept, self.server_url, self.static_paths, self._static_version)

        def init_settings(self):
            # Before Voila builds its kernel manager and pages: the pages load script chunks from a versioned path.
            self._static_version = static_version(self.static_paths)
            self.voila_configuration.page_config_hook = versioned_page_config(self._static_version, self.base_url)
            settings = super().init_settings()
            # HTML, JavaScript, CSS and JSON go compressed to browsers that accept gzip, and the kernel
            # websockets' messages to those that offer permessage-deflate. Tornado reads this when the
            # application is made, so it cannot go in tornado_settings, which Voila applies after.
            settings["compress_response"] = True
            settings.update(WEBSOCKET_COMPRESSION)
            return settings

        def stop(self):
            """Stop the kernels, then remove their connection folder.

            Voila removes the folder first, and a kernel the pool was starting at
            that instant kept making its sockets in it: the removal failed with
            "Directory not empty". Its ``shutdown_all`` then stopped short at a kernel
            still starting ("Kernel does not exist"). Each was a traceback in the
            server's log as it stopped."""
            from jupyter_core.utils import run_sync

            run_sync(_stop_kernels)(self.kernel_manager, self.log)
            _remove_folder(self.connection_dir, self.log)

    return CompanionVoila


async def _stop_kernels(manager, log) -> None:
    """Stop every kernel that has started, each on its own, so that one that cannot be stopped does not keep the
    others running. A kernel still starting ends by itself: it finds its connection file or the server gone
    (companion.forking)."""
    kernels = list(manager.list_kernel_ids())
    results = await asyncio.gather(*(manager.shutdown_kernel(kernel) for kernel in kernels), return_exceptions=True)
    for kernel, result in zip(kernels, results):
        if isinstance(result, Exception):
            log.info("Kernel %s was not stopped (%s); it ends with the server.", kernel, getattr(result, "log_message", None) or result)


def _remove_folder(folder: str, log, tries: int = 5) -> None:
    """Remove ``folder``, trying again while a kernel that was starting still makes its sockets in it."""
    for _ in range(tries):
        shutil.rmtree(folder, ignore_errors=True)
        if not os.path.exists(folder):
            return
        time.sleep(0.1)
    log.warning("Could not remove the kernels' connection folder %s; it can be deleted.", folder)


def prepare(settings: Settings, progress: Callable | None = None) -> None:
    """Everything a server needs before it starts: the schema and the released pages."""
    open_store(settings.db_url)
    if is_stale(settings):
        release(settings, progress)


def serve(
    settings: Settings, port: int = 8866, mode: str = "local", host: str = "127.0.0.1", base_url: str = "/", extra: Callable[[str], list] | None = None
) -> None:
    """Start the learner server and block until it is stopped.

    ``base_url`` and ``extra`` (more handlers, given the server's URL prefix) are for the hub service (:mod:`companion.hub.service`)."""
    from traitlets.config import Config

    config = voila_config(settings, port, host)
    config["Voila"]["base_url"] = base_url
    if mode == HUB_SERVICE:  # the service shows only the dashboard: no kernels kept waiting for the learners' pages
        config["CompanionKernelManager"]["preheat_denylist"] = [page for page in page_routes(settings).values() if page != paths.DASHBOARD_NOTEBOOK]
    (settings.home / "voila.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    write_kernel_profile(settings)
    os.environ.update(kernel_environment(settings, mode))
    jupyter_path = [str(write_template(settings)), *filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep))]
    os.environ["JUPYTER_PATH"] = os.pathsep.join(jupyter_path)
    compress_page_scripts()
    share_compiled_templates()
    saves = writer.start(settings.db_url)  # one process writes the kernels' saves, several in one transaction
    if saves is not None:
        os.environ[writer.ENVIRONMENT] = saves.path
    try:
        _voila_class(settings, extra).launch_instance(argv=[], config=Config(config))
    finally:
        if saves is not None:
            saves.stop()
