"""The companion hub service: the store's only door under JupyterHub, and the facilitators' dashboard.

JupyterHub starts it as a managed service named ``companion`` (see
``deploy/jupyterhub_config.py``), with the database URL in its environment and
nowhere else. It is the companion's own server (:mod:`companion.server`) with
the hub's prefix as its base URL, serving under ``/services/companion/``:

- ``api/store/<method>``: the learners' pages' saves and reads, each for the
  owner of the hub token it carries (:mod:`companion.hub.api`);
- ``dashboard``: the facilitator dashboard, after the hub's login, to members
  of the hub group ``companion-facilitators`` only. ``hub-login`` checks the
  hub user and hands the dashboard a facilitator key the service signs; the
  dashboard checks the group again at every action.

Learners' session pages are not served here: they run in each learner's own
server, which holds no database credentials.
"""

from __future__ import annotations

import os
from html import escape
from urllib.parse import quote, urlparse

from tornado import web

from .. import identity
from ..catalog import load_catalog
from ..errors import LinkError, SettingsError
from ..progress import session_rule
from ..settings import Settings
from ..store import open_store
from .api import store_api_handler
from .groups import members

KEY_DAYS = 1  # a facilitator key the service signs after the hub's login: re-signed at each login
NEEDED = ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_SERVICE_PREFIX")


class HubService:
    """What the service's handlers share: the store, the course's rules, and the hub's OAuth client."""

    def __init__(self, settings: Settings):
        from jupyterhub.services.auth import HubOAuth

        self.settings = settings
        self.store = open_store(settings.db_url)
        self.catalog = load_catalog(settings)
        self._rules: dict = {}
        # The one instance JupyterHub's own handlers use too (its OAuth callback finds the login's state in it).
        self.hub_auth = HubOAuth.instance(api_token=os.environ["JUPYTERHUB_API_TOKEN"], cache_max_age=60)

    def rule(self, session_id: str):
        """The completion rule of ``session_id``, from the service's own copy of the course."""
        if session_id not in self._rules:
            self._rules[session_id] = session_rule(self.catalog, session_id)
        return self._rules[session_id]


def _login_handler(service: HubService, page_html):
    from jupyterhub.services.auth import HubOAuthenticated

    class FacilitatorLogin(HubOAuthenticated, web.RequestHandler):
        """``hub-login``: the hub's login, the group check, then the dashboard with a key signed for this person."""

        def initialize(self):
            self.hub_auth = service.hub_auth

        @web.authenticated
        def get(self):
            name = self.current_user["name"]
            settings = service.settings
            try:
                allowed = name in members(settings.facilitator_group)
            except LinkError as error:
                self._refuse(503, "The dashboard could not be opened just now", str(error))
                return
            if not allowed:
                self._refuse(
                    403,
                    "This dashboard is for facilitators",
                    f"{name} is not in the hub group {settings.facilitator_group}. If you facilitate this course, "
                    "ask the hub administrator to add you. Your own sessions open from their links in Canvas.",
                )
                return
            key = identity.sign(name, identity.server_secret(settings.home), KEY_DAYS, purpose="facilitator")
            self.redirect(f"{service.hub_auth.base_url}dashboard?{identity.FACILITATOR_PARAMETER}={quote(key)}")

        def _refuse(self, status: int, heading: str, words: str) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(page_html(service.settings, heading, f"<p>{escape(words)}</p>"))

    return FacilitatorLogin


def service_handlers(service: HubService):
    """The service's own routes, for :func:`companion.server.serve`'s ``extra``."""
    from jupyterhub.services.auth import HubOAuthCallbackHandler
    from jupyter_server.utils import url_path_join

    from ..server import message_page

    def handlers(server_url: str) -> list:
        return [
            (url_path_join(server_url, r"/api/store/(\w+)"), store_api_handler(), {"service": service}),
            (url_path_join(server_url, "/hub-login"), _login_handler(service, message_page)),
            (url_path_join(server_url, "/oauth_callback"), HubOAuthCallbackHandler, {}),
        ]

    return handlers


def check_environment() -> None:
    """The hub gives its services their address and token; without them this is not running as one."""
    missing = [name for name in NEEDED if not os.environ.get(name)]
    if missing:
        raise SettingsError(
            f"companion hub-service runs as a JupyterHub service, and {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set. "
            "Define the service in c.JupyterHub.services in jupyterhub_config.py (see deploy/jupyterhub_config.py): the hub starts it."
        )


def run(settings: Settings) -> None:
    """Start the service where the hub says (``JUPYTERHUB_SERVICE_URL`` and its prefix) and block."""
    check_environment()
    if settings.db_url.startswith("sqlite") and not os.environ.get("COMPANION_DB_URL"):
        print(f"companion hub-service: no COMPANION_DB_URL, so the store is SQLite in {settings.home}.", flush=True)
    from ..server import serve

    where = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    service = HubService(settings)
    serve(
        settings,
        port=where.port or 80,
        mode=identity.HUB_SERVICE,
        host=where.hostname or "127.0.0.1",
        base_url=os.environ["JUPYTERHUB_SERVICE_PREFIX"],
        extra=service_handlers(service),
    )
