"""Who is a facilitator under JupyterHub: the members of a hub group, asked of the hub at each use.

The hub's configuration decides (``c.JupyterHub.load_groups``, or the admin
page), never a file a learner can edit. The service asks with its own token
(``JUPYTERHUB_API_TOKEN``, with the scope ``read:groups``), so taking someone
out of the group takes effect at their next action.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request

from ..errors import LinkError


def members(group: str) -> frozenset[str]:
    """The usernames in hub group ``group`` (empty when the group does not exist), asked with this process's hub token."""
    api = os.environ.get("JUPYTERHUB_API_URL", "").rstrip("/")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api or not token:
        raise LinkError("The facilitator dashboard runs as the companion hub service; start it from JupyterHub's configuration. Nothing is shown.")
    request = urllib.request.Request(f"{api}/groups/{urllib.parse.quote(group)}", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return frozenset(json.loads(answer.read()).get("users", []))
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return frozenset()
        raise LinkError(
            f"The hub would not say who is in the group {group} ({error.code}). Give the companion service the scope "
            "read:groups in c.JupyterHub.load_roles. Nothing is shown."
        )
    except (urllib.error.URLError, OSError):
        raise LinkError("The hub could not be reached to check who is a facilitator. Try again in a minute. Nothing is shown.")
