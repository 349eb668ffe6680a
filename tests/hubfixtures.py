"""A real JupyterHub for the end-to-end test: the hub and its proxy, the companion hub service, PostgreSQL, local users.

:class:`HubDeployment` starts, on free ports and in folders of their own:

- a PostgreSQL server with password authentication only (``scram-sha-256``,
  for local sockets and TCP alike), whose role ``companion`` and its password
  are given to the companion hub service alone;
- the fixture course, released (``companion release``) into a folder every
  local user may read, since the learners' servers run as those users;
- JupyterHub (``python -m jupyterhub``) as root, with configurable-http-proxy,
  a shared test password (DummyAuthenticator), LocalProcessSpawner, the
  managed service ``companion`` (``companion hub-service``) and the group
  ``companion-facilitators`` holding the facilitator;
- the people, as real local Unix users (``useradd -m`` when missing; the ones
  made here are removed again, with their homes).

Everything is stopped at the end: the hub, every process it started (proxy,
service, learners' servers and their kernels), PostgreSQL; the folders removed.

Nothing here skips: a missing proxy, browser or PostgreSQL fails with what to
install (``bash tools/setup-tests.sh`` installs them all).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, make_course

BIN = Path(sys.executable).parent  # jupyterhub-singleuser and companion are installed beside this Python
SERVICE = "companion"
FACILITATORS = "companion-facilitators"
FIRST_SESSION_PAGE = "01-every-activity.ipynb"  # the fixture course's first session, as released
HUB_LOG_LINES = 150  # how much of the hub's log a failure shows


# What the machine needs ---------------------------------------------------------


def require_tools() -> str:
    """The path of configurable-http-proxy; fails with what to install when something the hub needs is missing."""
    if os.geteuid() != 0:
        pytest.fail("The JupyterHub test starts learners' servers as other local users, so it runs as root (as a hub does).")
    for tool in ("useradd", "userdel", "runuser"):
        if shutil.which(tool) is None:
            pytest.fail(f"'{tool}' is missing: install Debian's passwd and util-linux packages, then run the tests again.")
    proxy = shutil.which("configurable-http-proxy")
    if proxy is None:
        pytest.fail(
            "configurable-http-proxy (JupyterHub's proxy) is not installed: run 'bash tools/setup-tests.sh' "
            "(or 'npm install -g configurable-http-proxy'), then run the tests again."
        )
    for script in ("jupyterhub-singleuser", "companion"):
        if not (BIN / script).exists():
            pytest.fail(f"{BIN / script} is missing: run 'bash tools/setup-tests.sh' (pip install -e '.[test]'), then run the tests again.")
    return proxy


def require_python_for_everyone() -> None:
    """Other users run this Python (the learners' servers): every folder above it must let them through."""
    for folder in Path(os.path.realpath(sys.executable)).parents:
        if not folder.stat().st_mode & stat.S_IXOTH:
            pytest.fail(
                f"Local users cannot run {sys.executable}: {folder} does not let others through. "
                f"Run 'bash tools/setup-tests.sh' (it does 'chmod o+x {folder}'), then run the tests again."
            )


# Local users --------------------------------------------------------------------


def ensure_users(names) -> list[str]:
    """Make each missing user with ``useradd -m``; returns the ones made here (and only those are removed later)."""
    made = []
    for name in names:
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True, capture_output=True)
            made.append(name)
    return made


def remove_users(names) -> None:
    for name in names:
        subprocess.run(["userdel", "--remove", name], capture_output=True)


def run_as(user: str, argv: list[str], env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``argv`` run as local ``user`` with a clean environment (only what ``env`` adds): as that person could run it."""
    home = pwd.getpwnam(user).pw_dir
    environment = {"HOME": home, "USER": user, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", **(env or {})}
    return subprocess.run(
        ["runuser", "-u", user, "--", "env", "-i", *[f"{k}={v}" for k, v in environment.items()], *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=home if os.path.isdir(home) else "/",
    )


# Folders ------------------------------------------------------------------------


def readable_by_everyone(folder: Path) -> None:
    """``chmod a+rX`` on a tree: the learners' servers (other users) read the course and its released pages."""
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        extra = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
        if path.is_dir() or mode & stat.S_IXUSR:
            extra |= stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
        path.chmod(stat.S_IMODE(mode) | extra)


def released_course(folder: Path) -> tuple[Path, Path]:
    """The fixture course in ``folder/course`` (root's alone: the sources hold the facilitator notes), and the
    learners' copy that ``companion release --to`` publishes in ``folder/learners``, readable by everyone.

    Returns (course root, learners' copy)."""
    root = make_course(folder / "course")
    learners = folder / "learners"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPANION_", "JUPYTERHUB_"))}
    env.update(COMPANION_COURSE_DIR=str(root), COMPANION_HOME=str(root / "reflections"))
    done = subprocess.run([str(BIN / "companion"), "release", "--to", str(learners)], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"companion release failed:\n{done.stdout}\n{done.stderr}")
    if not (learners / FIRST_SESSION_PAGE).exists():
        raise RuntimeError(f"companion release --to did not write {learners / FIRST_SESSION_PAGE}:\n{done.stdout}")
    readable_by_everyone(learners)  # the published pages hold nothing private
    root.chmod(0o700)
    return root, learners


# PostgreSQL ---------------------------------------------------------------------


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (or run 'bash tools/setup-tests.sh'), then run the tests again.")
    return found[-1].parent


class Postgres:
    """A PostgreSQL server of its own, on 127.0.0.1 and a free port, where every connection needs a password.

    Its socket folder is the postgres user's alone; over TCP, ``scram-sha-256``
    for everyone. The database ``companion`` belongs to the role ``companion``,
    whose password is in :attr:`url` and nowhere else."""

    def __init__(self):
        self.bin = _postgres_bin()
        self.folder = Path(tempfile.mkdtemp(prefix="companion-hub-pg-"))
        shutil.chown(self.folder, "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        self.log = self.folder / "postgres.log"
        self.admin_password = secrets.token_urlsafe(24)
        self.password = secrets.token_urlsafe(24)
        self.url = f"postgresql+psycopg2://companion:{self.password}@127.0.0.1:{self.port}/companion"
        self.started = False
        try:
            self._start()
        except Exception:
            self.stop()
            raise

    def _as_postgres(self, *argv: str, **kwargs) -> subprocess.CompletedProcess:
        done = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, **kwargs)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}\n{self.log_text()}")
        return done

    def _start(self) -> None:
        secret = self.folder / "admin-password"
        secret.write_text(self.admin_password + "\n")
        secret.chmod(0o600)
        shutil.chown(secret, "postgres")
        try:
            self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=scram-sha-256", f"--pwfile={secret}")
        finally:
            secret.unlink()
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120",
            "-o", f"-p {self.port} -k {self.folder} -h 127.0.0.1", "start",
        )  # fmt: skip
        self.started = True
        import psycopg2

        admin = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", password=self.admin_password, dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("CREATE ROLE companion LOGIN PASSWORD %s", (self.password,))
            cursor.execute("CREATE DATABASE companion OWNER companion")
        admin.close()

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.started:
            subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], capture_output=True)
            self.started = False
        shutil.rmtree(self.folder, ignore_errors=True)


# JupyterHub ---------------------------------------------------------------------


HUB_CONFIG = '''\
# Written by tests/hubfixtures.py for one test run.
c = get_config()  # noqa

c.JupyterHub.bind_url = {public!r}
c.JupyterHub.hub_bind_url = {hub_api!r}
c.ConfigurableHTTPProxy.api_url = {proxy_api!r}
c.ConfigurableHTTPProxy.command = [{proxy_command!r}]
c.JupyterHub.db_url = {db_url!r}
c.JupyterHub.cookie_secret_file = {cookie_secret!r}
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True

c.JupyterHub.authenticator_class = "jupyterhub.auth.DummyAuthenticator"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allowed_users = {users!r}

c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
c.Spawner.cmd = [{singleuser!r}]
# The package is installed editable here, which installs no Jupyter configuration: name its extension (the pages' look).
c.Spawner.args = ["--ServerApp.jpserver_extensions=companion.jupyter_extension=True"]
c.Spawner.notebook_dir = {site!r}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "access:services!service={service}",
]


def _companion_home(spawner):
    return f"/home/{{spawner.user.name}}/.companion"


# What a learner's server knows of the companion: where the service is and where the course is; no database.
c.Spawner.environment = {{
    "COMPANION_SERVICE_URL": {service_url!r},
    "COMPANION_COURSE_DIR": {course!r},
    "COMPANION_IDENTITY": "hub",
    "COMPANION_HOME": _companion_home,
}}

c.JupyterHub.load_groups = {{{facilitators!r}: {{"users": {facilitator_users!r}}}}}
c.JupyterHub.load_roles = {roles!r}
c.JupyterHub.services = {services!r}
'''


class HubDeployment:
    """JupyterHub, its proxy, the companion service and PostgreSQL, started in that order; :meth:`stop` ends them all."""

    def __init__(self, learners=("alice", "bob"), facilitators=("lee",), with_service: bool = True):
        self.learners = tuple(learners)
        self.facilitators = tuple(facilitators)
        self.with_service = with_service
        self.proxy_command = require_tools()
        require_python_for_everyone()
        self.password = secrets.token_urlsafe(16)
        self.harness_token = secrets.token_hex(32)
        self.process: subprocess.Popen | None = None
        self.postgres: Postgres | None = None
        self.made_users: list[str] = []
        self.started: list = []  # psutil.Process of everything the hub started, for the end
        # Root's own: the hub's database, cookie secret, config (the harness token), log, and the service's data home.
        self.work = Path(tempfile.mkdtemp(prefix="companion-hub-"))
        self.work.chmod(0o700)
        # Everyone's: the course and its released pages.
        self.shared = Path(tempfile.mkdtemp(prefix="companion-hub-course-"))
        self.shared.chmod(0o755)
        self.log_path = self.work / "jupyterhub.log"
        try:
            self.made_users = ensure_users([*self.learners, *self.facilitators])
            self.uids = {name: pwd.getpwnam(name).pw_uid for name in (*self.learners, *self.facilitators)}
            self.course, self.site = released_course(self.shared)
            if with_service:
                self.postgres = Postgres()
            self.port, self.hub_port, self.proxy_api_port, self.service_port = (free_port() for _ in range(4))
            self.url = f"http://127.0.0.1:{self.port}"
            self.service_url = f"http://127.0.0.1:{self.service_port}/services/{SERVICE}/"
            self.service_home = self.work / "service-home"
            self.service_home.mkdir(mode=0o700)
            self.config = self.work / "jupyterhub_config.py"
            self.config.write_text(self._config())
            self._start_hub()
        except BaseException:
            self.stop()
            raise

    # The configuration ---------------------------------------------------------

    def service_definition(self) -> dict:
        return {
            "name": SERVICE,
            "url": f"http://127.0.0.1:{self.service_port}",
            "command": [str(BIN / "companion"), "hub-service"],
            "environment": {
                "COMPANION_DB_URL": self.postgres.url,
                "COMPANION_COURSE_DIR": str(self.course),
                "COMPANION_HOME": str(self.service_home),
            },
            "oauth_no_confirm": True,
        }

    def _config(self) -> str:
        services = [{"name": "test-harness", "api_token": self.harness_token}]
        roles = [
            {"name": "user", "scopes": ["self", f"access:services!service={SERVICE}"]},
            # The test's own look at the hub (who is running, where), never used by the people in it.
            {"name": "test-harness", "services": ["test-harness"], "scopes": ["read:users", "read:servers", "admin:servers"]},
        ]
        if self.with_service:
            services.insert(0, self.service_definition())
            roles.insert(1, {"name": "companion-service", "services": [SERVICE], "scopes": ["read:groups", "read:users:groups", "read:users:name"]})
        return HUB_CONFIG.format(
            public=f"http://127.0.0.1:{self.port}",
            hub_api=f"http://127.0.0.1:{self.hub_port}",
            proxy_api=f"http://127.0.0.1:{self.proxy_api_port}",
            proxy_command=self.proxy_command,
            db_url=f"sqlite:///{self.work / 'jupyterhub.sqlite'}",
            cookie_secret=str(self.work / "jupyterhub_cookie_secret"),
            password=self.password,
            users={*self.learners, *self.facilitators},
            singleuser=str(BIN / "jupyterhub-singleuser"),
            site=str(self.site),
            service=SERVICE,
            service_url=self.service_url,
            course=str(self.site),  # the learners' copy: the sources stay root's
            facilitators=FACILITATORS,
            facilitator_users=list(self.facilitators),
            roles=roles,
            services=services,
        )

    # Starting and stopping --------------------------------------------------------

    def _start_hub(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPANION_", "JUPYTERHUB_", "PG", "CONFIGPROXY_"))}
        env["PATH"] = os.pathsep.join([str(BIN), str(Path(self.proxy_command).parent), env.get("PATH", "/usr/bin:/bin")])
        self.log = open(self.log_path, "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.config)],
            cwd=self.work,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_for(self._hub_answers, timeout=180, what="JupyterHub to answer at /hub/api")
        if self.with_service:
            self.wait_for(lambda: self._answers(self.service_url), timeout=180, what=f"the companion service to answer at {self.service_url}")

    def _hub_answers(self) -> bool:
        """True once the hub itself answers through its proxy (the proxy alone answers 404 or 503 before)."""
        try:
            with urllib.request.urlopen(f"{self.url}/hub/api", timeout=5) as response:
                return response.status == 200 and "version" in json.loads(response.read())
        except (OSError, ValueError):
            return False

    def _answers(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return True
        except urllib.error.HTTPError as error:
            return error.code < 500
        except OSError:
            return False

    def wait_for(self, condition, timeout: float = 120, what: str = "the hub"):
        """Poll ``condition`` until it gives something true; fails with the hub's log if the hub ends or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"JupyterHub exited with {self.process.returncode} while waiting for {what}.\n{self.log_tail()}")
            result = condition()
            if result:
                return result
            time.sleep(0.25)
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}.\n{self.log_tail()}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return getattr(self, "final_log", "")

    def log_tail(self, lines: int = HUB_LOG_LINES) -> str:
        text = "\n".join(self.log_text().splitlines()[-lines:])
        return f"--- JupyterHub's log (last {lines} lines, services and learners' servers included) ---\n{text}\n--- end of JupyterHub's log ---"

    @contextlib.contextmanager
    def log_on_failure(self):
        """A failure inside shows the hub's log (with the service's and the learners' servers' output) after its own message."""
        try:
            yield
        except BaseException as error:
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
            raise AssertionError(f"{type(error).__name__}: {error}\n\n{self.log_tail()}") from error

    def _everything_started(self) -> list:
        import psutil

        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        """The hub (which stops the servers it spawned, the service and the proxy), then anything left of them; PostgreSQL; the folders."""
        import psutil

        if self.process is not None and self.process.poll() is None:
            self.started = self._everything_started()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # The learners' servers and the proxy run in sessions of their own: whatever outlived the hub is ended here.
        leftovers = [p for p in self.started if p.is_running()]
        for process in leftovers:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(leftovers, timeout=10)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=10)
        if getattr(self, "log", None) is not None:
            self.log.close()
            self.final_log = self.log_text()  # kept after the folder is gone
        if self.postgres is not None:
            self.postgres.stop()
        remove_users(self.made_users)
        shutil.rmtree(self.shared, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)

    # Looking at it ---------------------------------------------------------------

    def api(self, path: str, method: str = "GET", body: dict | None = None):
        """The hub's REST API (``/hub/api<path>``) with the test's own token; the answer's JSON, or None."""
        request = urllib.request.Request(
            f"{self.url}/hub/api{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"token {self.harness_token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else None

    def server_ready(self, name: str) -> bool:
        server = (self.api(f"/users/{name}").get("servers") or {}).get("")
        return bool(server and server.get("ready"))

    def start_server(self, name: str) -> None:
        """Start ``name``'s single-user server through the hub's API and wait until the hub says it is ready."""
        try:
            self.api(f"/users/{name}/server", method="POST")
        except urllib.error.HTTPError as error:
            if error.code != 400:  # 400: it is already running or starting
                raise AssertionError(f"the hub did not start {name}'s server: {error.code} {error.read()[:500]!r}\n{self.log_tail()}")
        self.wait_for(lambda: self.server_ready(name), timeout=180, what=f"{name}'s server to be ready")

    def server_process(self, name: str):
        """The psutil.Process of ``name``'s single-user server (the hub's child running as that user)."""
        for process in self._everything_started():
            try:
                if process.uids().real == self.uids[name] and "jupyterhub-singleuser" in " ".join(process.cmdline()):
                    return process
            except Exception:
                continue
        raise AssertionError(f"no single-user server runs as {name}")

    def server_environment(self, name: str) -> dict:
        """The environment ``name``'s single-user server was started with, as /proc shows it."""
        return self.server_process(name).environ()

    def page_url(self, name: str, page: str = FIRST_SESSION_PAGE) -> str:
        return f"{self.url}/user/{name}/voila/render/{urllib.parse.quote(page)}"

    def dashboard_url(self) -> str:
        return f"{self.url}/services/{SERVICE}/dashboard"


# Signing in -----------------------------------------------------------------------


def fill_login(page, hub: HubDeployment, name: str) -> None:
    """On the hub's login page shown in ``page``: ``name``, the shared test password, "Sign in"."""
    page.locator("#username_input").fill(name)
    page.locator("#password_input").fill(hub.password)
    page.locator("#login_submit").click()


def sign_in(page, hub: HubDeployment, name: str, next_path: str = "") -> None:
    """Sign in as ``name`` on the hub's own login page, as a person does; the hub then sends them to ``next_path``."""
    page.goto(f"{hub.url}/hub/login" + (f"?next={urllib.parse.quote(next_path)}" if next_path else ""))
    fill_login(page, hub, name)
