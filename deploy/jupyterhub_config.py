"""JupyterHub on one machine for the Supervisor Companion (see README, "Under JupyterHub").

Copy this file to /etc/jupyterhub/jupyterhub_config.py, edit the settings
below, and start the hub as root (it starts each learner's server as its own
user) with ``jupyterhub -f /etc/jupyterhub/jupyterhub_config.py``, e.g. from a
systemd unit. The hub, the companion service and the learners' servers run
from one Python environment that has ``supervisor-companion[hub]``,
``jupyterhub-ltiauthenticator``, ``jupyterhub-systemdspawner``,
``jupyterhub-idle-culler`` and ``nbgitpuller`` installed.

No secret is written here. The hub reads them from its environment (a systemd
``EnvironmentFile=`` readable by root only):

- ``COMPANION_DB_URL``: the companion's PostgreSQL URL with its password,
  e.g. ``postgresql+psycopg2://companion:<password>@127.0.0.1/companion``.
  Only the companion service is given it; learners' servers never are.
- LTI 1.1 (the default, ``COMPANION_LTI=1.1``): ``LTI11_CONSUMER_KEY`` and
  ``LTI11_SHARED_SECRET``, the pair entered in Canvas for the app.
- LTI 1.3 (``COMPANION_LTI=1.3``): ``LTI13_CLIENT_ID``, the Canvas developer
  key's client ID (several: comma-separated); ``LTI13_ISSUER``,
  ``LTI13_AUTHORIZE_URL`` and ``LTI13_JWKS_ENDPOINT`` if your Canvas is not
  Instructure's cloud.
"""

import os
import sys

c = get_config()  # noqa: F821 (JupyterHub provides get_config)


def secret(name):
    """A secret from the hub's environment; the hub does not start without it."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise SystemExit(f"jupyterhub_config.py: {name} is not set. Put it in the hub's environment (README, Under JupyterHub).")
    return value


# ---------------------------------------------------------------------------
# Settings to edit
# ---------------------------------------------------------------------------

# Facilitators: hub usernames (the roster's usernames) who may open the facilitator dashboard.
# The hub only adds members from here; to take someone out, use the hub's admin page or its API.
FACILITATORS = []
# Hub administrators (they can see the admin page, not the companion's data).
ADMINS = set()

# The course repository (its main branch, facilitator notes included), as the companion service reads it.
# Readable by root only: learners must not read the facilitator notes.
SERVICE_COURSE_DIR = "/srv/companion/course"
# The companion service's own data folder (its secret key, its copy of the pages). Root only, mode 700.
SERVICE_HOME = "/var/lib/companion"
SERVICE_PORT = 10101

# How learners get the released course (the copy `companion release --to` publishes, never the sources):
# - nbgitpuller (the default, what `companion canvas package --hub` links to): the Canvas link pulls the
#   release branch into COURSE_FOLDER in the learner's home: the last part of the repository's clone URL
#   (https://github.com/your-org/antiracist-leadership.git -> antiracist-leadership).
# - read-only: set SHARED_COURSE_ROOT to a folder holding a checkout of the release branch in
#   SHARED_COURSE_ROOT/COURSE_FOLDER (readable by all), and use the `hub` links from `companion canvas links --hub`.
COURSE_FOLDER = "antiracist-leadership"
SHARED_COURSE_ROOT = None  # e.g. "/srv/companion/released"

# The environment the hub runs from: the learners' servers and the services use the same one.
BIN = os.path.dirname(sys.executable)

# ---------------------------------------------------------------------------
# Learners' servers
# ---------------------------------------------------------------------------

# SystemdSpawner (pip install jupyterhub-systemdspawner) gives each learner a transient Unix user
# (dynamic_users), so the hub needs no account per learner; their files persist in /var/lib/<username>.
c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
c.SystemdSpawner.dynamic_users = True
c.SystemdSpawner.isolate_tmp = True
c.SystemdSpawner.isolate_devices = True
c.SystemdSpawner.disable_user_sudo = True
# A learner's server: about 120 MiB per open page (README, Performance). SystemdSpawner enforces this.
c.Spawner.mem_limit = "1G"
# If every hub user has a Unix account on this machine instead, the default spawner does:
#   c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
# (it enforces no memory limit).

c.Spawner.cmd = [os.path.join(BIN, "jupyterhub-singleuser")]
c.Spawner.args = [
    # The companion's Voila template. Installing the package (a wheel) already enables this server
    # extension; an editable install (pip install -e) installs no data files, and this line covers it.
    "--ServerApp.jpserver_extensions=companion.jupyter_extension=True",
    # Kernels of pages closed without a goodbye (a browser that crashed) stop after 30 minutes.
    "--MappingKernelManager.cull_idle_timeout=1800",
    "--MappingKernelManager.cull_interval=60",
]


def learner_course_dir(spawner):
    """The released course as the learner's server sees it (COMPANION_COURSE_DIR)."""
    if SHARED_COURSE_ROOT:
        return os.path.join(SHARED_COURSE_ROOT, COURSE_FOLDER)
    if getattr(spawner, "dynamic_users", False):
        home = f"/var/lib/{spawner.user.name}"  # SystemdSpawner's home for a dynamic user
    else:
        import pwd

        home = pwd.getpwnam(spawner.user.name).pw_dir
    # nbgitpuller pulls into the server's root (the home), or under NBGITPULLER_PARENTPATH when that is set:
    # then join it here too, and pass it to `companion canvas links/package --hub --parent-path`.
    return os.path.join(home, COURSE_FOLDER)


if SHARED_COURSE_ROOT:
    c.Spawner.notebook_dir = SHARED_COURSE_ROOT
    c.SystemdSpawner.readonly_paths = [SHARED_COURSE_ROOT]

# What a learner's server knows: where the companion service is and where the course is. Never the
# database URL: a learner can run any code in their own server.
c.Spawner.environment = {
    "COMPANION_SERVICE_URL": f"http://127.0.0.1:{SERVICE_PORT}/services/companion/",
    "COMPANION_COURSE_DIR": learner_course_dir,
    "COMPANION_IDENTITY": "hub",
}
# The token each learner's server gets may reach the companion service (which answers with that learner's data only).
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "access:services!service=companion",
]

# ---------------------------------------------------------------------------
# The companion service: the only holder of the database URL
# ---------------------------------------------------------------------------

c.JupyterHub.services = [
    {
        "name": "companion",
        "url": f"http://127.0.0.1:{SERVICE_PORT}",
        "command": [os.path.join(BIN, "companion"), "hub-service"],
        "environment": {
            "COMPANION_DB_URL": secret("COMPANION_DB_URL"),
            "COMPANION_COURSE_DIR": SERVICE_COURSE_DIR,
            "COMPANION_HOME": SERVICE_HOME,
        },
        "oauth_no_confirm": True,
    },
    # Stops learners' servers unused for an hour (pip install jupyterhub-idle-culler, in this environment).
    {
        "name": "jupyterhub-idle-culler",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", "--timeout=3600"],
    },
]

c.JupyterHub.load_groups = {"companion-facilitators": {"users": FACILITATORS}}
c.JupyterHub.load_roles = [
    # Every user: their own things, and the companion service (its dashboard checks the group itself).
    {"name": "user", "scopes": ["self", "access:services!service=companion"]},
    # The companion service asks the hub who is in companion-facilitators.
    {
        "name": "companion-service",
        "services": ["companion"],
        "scopes": ["read:groups", "read:users:groups", "read:users:name"],
    },
    {
        "name": "jupyterhub-idle-culler",
        "services": ["jupyterhub-idle-culler"],
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    },
]

# ---------------------------------------------------------------------------
# Who signs in: Canvas, over LTI (pip install jupyterhub-ltiauthenticator)
# ---------------------------------------------------------------------------
# The hub username must be the roster's username (what `companion roster import` was given), or the
# learner's work and the facilitator's group will not match. JupyterHub lowercases usernames.

LTI = os.environ.get("COMPANION_LTI", "1.1")
if LTI == "1.1":
    # Canvas: Settings > Apps > +App, "By URL" (https://<hub>/hub/lti11/config) or manual, with the key and
    # secret below and privacy "Public", so the launch carries custom_canvas_user_login_id (the login ID).
    c.JupyterHub.authenticator_class = "ltiauthenticator.lti11.auth.LTI11Authenticator"
    c.LTI11Authenticator.consumers = {secret("LTI11_CONSUMER_KEY"): secret("LTI11_SHARED_SECRET")}
    c.LTI11Authenticator.username_key = "custom_canvas_user_login_id"
elif LTI == "1.3":
    # Canvas: Admin > Developer Keys > LTI key, "Enter URL" https://<hub>/hub/lti13/config, redirect URI
    # https://<hub>/hub/lti13/oauth_callback, and the custom field login_id=$Canvas.user.loginId, which
    # arrives as custom_login_id. (Or username_key = "email" if the roster's usernames are email addresses.)
    c.JupyterHub.authenticator_class = "ltiauthenticator.lti13.auth.LTI13Authenticator"
    c.LTI13Authenticator.client_id = [cid.strip() for cid in secret("LTI13_CLIENT_ID").split(",") if cid.strip()]
    c.LTI13Authenticator.issuer = os.environ.get("LTI13_ISSUER", "https://canvas.instructure.com")
    c.LTI13Authenticator.authorize_url = os.environ.get("LTI13_AUTHORIZE_URL", "https://sso.canvaslms.com/api/lti/authorize_redirect")
    c.LTI13Authenticator.jwks_endpoint = os.environ.get("LTI13_JWKS_ENDPOINT", "https://sso.canvaslms.com/api/lti/security/jwks")
    c.LTI13Authenticator.username_key = "custom_login_id"
else:
    raise SystemExit(f"jupyterhub_config.py: COMPANION_LTI is {LTI!r}; use 1.1 or 1.3.")

# Only launches signed by your Canvas reach the hub. To admit only the roster, list its usernames in
# c.Authenticator.allowed_users instead.
c.Authenticator.allow_all = True
c.Authenticator.admin_users = ADMINS

# The hub listens on http://:8000. Canvas is served over HTTPS, so put a proxy that ends TLS in front
# (or set c.JupyterHub.ssl_cert and c.JupyterHub.ssl_key and bind_url = "https://:443").
