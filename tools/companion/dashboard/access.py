"""Who may open the facilitator dashboard, and the personal link that opens it.

By the mode the server runs in:

- **JupyterHub**: the dashboard is the companion hub service's
  (:mod:`companion.hub.service`): the hub's login, then a facilitator key the
  service signs, and the person must be in the hub group
  ``companion-facilitators`` (``[hub] facilitator_group``) at every action. A
  learner's own server (``JUPYTERHUB_USER``) never shows it.
- **link** (and local): ``?facilitator=<key>``, a key signed with the server's
  secret for the purpose "facilitator" (``companion dashboard --name NAME``
  prints the link), so a learner's personal link never opens it. When the list
  is not empty, NAME must be on it too: taking a name off revokes its key.
- **local** only: the local learner (``COMPANION_LEARNER`` or the login) on the
  list opens it without a key.
"""

from __future__ import annotations

import getpass
import os
from typing import Mapping
from urllib.parse import quote

from .. import identity
from ..errors import LinkError
from ..identity import HUB_SERVICE
from ..settings import Settings

DASHBOARD_PAGE = "dashboard"


def facilitator(settings: Settings, query: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The facilitator opening the dashboard; :class:`LinkError` says why this person may not."""
    allowed = settings.server.facilitators
    listed = "[server] facilitators in course/course.toml"
    mode = environ.get("COMPANION_IDENTITY", "local")
    if environ.get("JUPYTERHUB_USER") and mode != HUB_SERVICE:
        raise LinkError(
            "Under JupyterHub the facilitator dashboard is served by the companion service, not from your own server: "
            "open /services/companion/dashboard on the hub. Nothing is shown."
        )
    token = identity.token_from_query(query, identity.FACILITATOR_PARAMETER)
    if token:
        try:
            name = identity.verify(token, identity.server_secret(settings.home), purpose="facilitator")
        except LinkError as error:
            if str(error).startswith("This link expired"):
                raise LinkError("This facilitator link has expired. Ask the course administrator for a new one ('companion dashboard --name YOUR-NAME'). Nothing is shown.")
            raise LinkError(
                "This is not a valid facilitator link: it may have been copied incompletely, or it is a learner's "
                "link. Ask the course administrator for yours ('companion dashboard --name YOUR-NAME'). Nothing is shown."
            )
        if mode == HUB_SERVICE:
            from ..hub.groups import members

            group = settings.facilitator_group
            if name not in members(group):
                raise LinkError(f"{name} is not in the hub group {group}, so the dashboard is not shown. Ask the hub administrator to add you.")
        elif allowed and name not in allowed:
            raise LinkError(f"{name} is no longer on the list of facilitators ({listed}), so this link does not open the dashboard. Nothing is shown.")
        return name
    if mode == "local":
        local = environ.get("COMPANION_LEARNER") or getpass.getuser()
        if local in allowed:
            return local
    raise LinkError(
        "The facilitator dashboard opens only with a facilitator link; a learner's personal link does not open it. "
        "Ask the course administrator for yours ('companion dashboard --name YOUR-NAME'). Nothing is shown."
    )


def facilitator_link(settings: Settings, base_url: str, name: str, days: float | None = None) -> str:
    """The dashboard's address with a signed facilitator key for ``name`` (what ``companion dashboard`` prints)."""
    allowed = settings.server.facilitators
    if allowed and name not in allowed:
        raise LinkError(
            f"{name} is not on the list of facilitators ([server] facilitators in course/course.toml: "
            f"{', '.join(allowed)}). Add them there first; a link for them would not open the dashboard."
        )
    token = identity.sign(name, identity.server_secret(settings.home), days or settings.server.link_days, purpose="facilitator")
    return f"{base_url.rstrip('/')}/{DASHBOARD_PAGE}?{identity.FACILITATOR_PARAMETER}={quote(token)}"
