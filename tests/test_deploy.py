"""The deployment files under deploy/ and the companion's pages in a plain Jupyter server.

deploy/jupyterhub_config.py is run as JupyterHub runs it (a traitlets Config,
``get_config``); the Zero to JupyterHub values and the service's Kubernetes
manifest are read as YAML. The Voila template is checked in a real
``jupyter server`` that has no JUPYTER_PATH and none of the user's own
Jupyter folders: only what installing the package enables.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
import urllib.request
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from traitlets.config import Config

from companion.server import PAGE_EXTENSIONS
from conftest import REPO, free_port, run_in_own_loop, stop_process_group, wait_for_server

DEPLOY = REPO / "deploy"
DB_URL = "postgresql+psycopg2://companion:pw-4f1c9e@db.internal/companion"
SERVICE_SCOPE = "access:services!service=companion"


def hub_config(monkeypatch, **env) -> Config:
    """deploy/jupyterhub_config.py run with ``env`` as the hub's environment (LTI 1.1 secrets by default)."""
    for name in ("COMPANION_DB_URL", "COMPANION_LTI", "LTI11_CONSUMER_KEY", "LTI11_SHARED_SECRET", "LTI13_CLIENT_ID",
                 "LTI13_ISSUER", "LTI13_AUTHORIZE_URL", "LTI13_JWKS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    values = {"COMPANION_DB_URL": DB_URL, "LTI11_CONSUMER_KEY": "canvas-key", "LTI11_SHARED_SECRET": "canvas-secret", **env}
    for name, value in values.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    path = DEPLOY / "jupyterhub_config.py"
    c = Config()
    exec(compile(path.read_text(), str(path), "exec"), {"c": c, "get_config": lambda: c})
    return c


def service(c: Config, name: str) -> dict:
    found = [s for s in c.JupyterHub.services if s["name"] == name]
    assert len(found) == 1, f"one service named {name}"
    return found[0]


def role(roles: list[dict], name: str) -> dict:
    found = [r for r in roles if r["name"] == name]
    assert len(found) == 1, f"one role named {name}"
    return found[0]


def learner_environment(c: Config, username: str = "ana", **spawner) -> dict[str, str]:
    """The environment the hub gives a learner's server: callables called with a spawner, as JupyterHub does."""
    fake = SimpleNamespace(user=SimpleNamespace(name=username), dynamic_users=c.SystemdSpawner.get("dynamic_users", False), **spawner)
    return {key: value(fake) if callable(value) else value for key, value in c.Spawner.environment.items()}


# --- deploy/jupyterhub_config.py ---------------------------------------------------------------


def test_the_hub_runs_the_companion_service_with_the_database_url_from_its_environment(monkeypatch):
    c = hub_config(monkeypatch)
    companion = service(c, "companion")
    assert companion["url"] == "http://127.0.0.1:10101"
    assert Path(companion["command"][0]).name == "companion" and companion["command"][1:] == ["hub-service"]
    assert companion["environment"]["COMPANION_DB_URL"] == DB_URL
    assert {"COMPANION_COURSE_DIR", "COMPANION_HOME"} <= set(companion["environment"])
    assert companion["oauth_no_confirm"] is True
    # Taken from the environment, not written in the file.
    other = "postgresql+psycopg2://companion:another@10.0.0.9/companion"
    assert service(hub_config(monkeypatch, COMPANION_DB_URL=other), "companion")["environment"]["COMPANION_DB_URL"] == other
    assert "pw-4f1c9e" not in (DEPLOY / "jupyterhub_config.py").read_text()


def test_the_hub_does_not_start_without_its_secrets(monkeypatch):
    with pytest.raises(SystemExit, match="COMPANION_DB_URL"):
        hub_config(monkeypatch, COMPANION_DB_URL=None)
    with pytest.raises(SystemExit, match="LTI11_SHARED_SECRET"):
        hub_config(monkeypatch, LTI11_SHARED_SECRET=None)
    with pytest.raises(SystemExit, match="LTI13_CLIENT_ID"):
        hub_config(monkeypatch, COMPANION_LTI="1.3")


def test_learners_servers_never_get_the_database_url(monkeypatch):
    from jupyterhub.spawner import LocalProcessSpawner

    c = hub_config(monkeypatch)
    env = learner_environment(c)
    assert env == {
        "COMPANION_SERVICE_URL": "http://127.0.0.1:10101/services/companion/",
        "COMPANION_COURSE_DIR": "/var/lib/ana/antiracist-leadership",  # where nbgitpuller pulls it in a dynamic user's home
        "COMPANION_IDENTITY": "hub",
    }
    shown = json.dumps([env, list(c.Spawner.args), list(c.Spawner.get("env_keep", []))])
    assert "COMPANION_DB_URL" not in shown and "pw-4f1c9e" not in shown and "postgresql" not in shown
    # The hub itself has COMPANION_DB_URL in its environment: it passes on only the variables in env_keep.
    assert "COMPANION_DB_URL" not in LocalProcessSpawner(config=c).env_keep


def test_every_user_and_their_servers_token_may_reach_the_companion_service(monkeypatch):
    c = hub_config(monkeypatch)
    assert role(c.JupyterHub.load_roles, "user")["scopes"] == ["self", SERVICE_SCOPE]
    companion = role(c.JupyterHub.load_roles, "companion-service")
    assert companion["services"] == ["companion"]
    assert set(companion["scopes"]) == {"read:groups", "read:users:groups", "read:users:name"}
    assert c.Spawner.server_token_scopes == ["users:activity!user", "access:servers!server", SERVICE_SCOPE]


def test_the_facilitators_group_exists(monkeypatch):
    c = hub_config(monkeypatch)
    assert c.JupyterHub.load_groups == {"companion-facilitators": {"users": []}}


def test_idle_servers_are_culled_by_a_service_with_only_the_scopes_it_needs(monkeypatch):
    c = hub_config(monkeypatch)
    culler = service(c, "jupyterhub-idle-culler")
    assert culler["command"][1:3] == ["-m", "jupyterhub_idle_culler"] and any(a.startswith("--timeout=") for a in culler["command"])
    assert set(role(c.JupyterHub.load_roles, "jupyterhub-idle-culler")["scopes"]) == {
        "list:users", "read:users:activity", "read:servers", "delete:servers",
    }


def test_canvas_signs_learners_in_with_the_rosters_usernames(monkeypatch):
    c = hub_config(monkeypatch)
    assert c.JupyterHub.authenticator_class == "ltiauthenticator.lti11.auth.LTI11Authenticator"
    assert c.LTI11Authenticator.consumers == {"canvas-key": "canvas-secret"}
    assert c.LTI11Authenticator.username_key == "custom_canvas_user_login_id"

    c = hub_config(monkeypatch, COMPANION_LTI="1.3", LTI13_CLIENT_ID="10000000000001, 10000000000002")
    assert c.JupyterHub.authenticator_class == "ltiauthenticator.lti13.auth.LTI13Authenticator"
    assert c.LTI13Authenticator.client_id == ["10000000000001", "10000000000002"]
    assert c.LTI13Authenticator.issuer == "https://canvas.instructure.com"
    assert c.LTI13Authenticator.authorize_url.endswith("/api/lti/authorize_redirect")
    assert c.LTI13Authenticator.jwks_endpoint.endswith("/api/lti/security/jwks")
    assert c.LTI13Authenticator.username_key == "custom_login_id"
    assert "LTI11Authenticator" not in c


def test_a_course_delivered_read_only_is_every_learners_server_root(monkeypatch):
    path = DEPLOY / "jupyterhub_config.py"
    source = path.read_text().replace('SHARED_COURSE_ROOT = None', 'SHARED_COURSE_ROOT = "/srv/companion/released"', 1)
    monkeypatch.setenv("COMPANION_DB_URL", DB_URL)
    monkeypatch.setenv("LTI11_CONSUMER_KEY", "k")
    monkeypatch.setenv("LTI11_SHARED_SECRET", "s")
    monkeypatch.delenv("COMPANION_LTI", raising=False)
    c = Config()
    exec(compile(source, str(path), "exec"), {"c": c, "get_config": lambda: c})
    assert c.Spawner.notebook_dir == "/srv/companion/released"
    assert c.SystemdSpawner.readonly_paths == ["/srv/companion/released"]
    assert learner_environment(c)["COMPANION_COURSE_DIR"] == "/srv/companion/released/antiracist-leadership"


# --- deploy/z2jh-values.yaml, deploy/companion-service.yaml, deploy/Dockerfile.singleuser -------


def values() -> dict:
    return yaml.safe_load((DEPLOY / "z2jh-values.yaml").read_text())


def manifests() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all((DEPLOY / "companion-service.yaml").read_text()) if doc}


def test_z2jh_registers_the_companion_service_roles_group_and_token_scopes():
    hub = values()["hub"]
    assert hub["services"]["companion"]["url"] == "http://companion:10101"
    assert hub["services"]["companion"]["oauth_no_confirm"] is True
    assert "command" not in hub["services"]["companion"], "an external service, in its own pod"
    assert hub["loadRoles"]["user"]["scopes"] == ["self", SERVICE_SCOPE]
    assert hub["loadRoles"]["companion-service"]["services"] == ["companion"]
    assert set(hub["loadRoles"]["companion-service"]["scopes"]) == {"read:groups", "read:users:groups", "read:users:name"}
    config = hub["config"]
    assert all(section[:1].isupper() for section in config), "the chart refuses hub.config sections that are not class names"
    assert not {"services", "load_roles"} & set(config["JupyterHub"]), "the chart's own keys: hub.services and hub.loadRoles"
    assert config["JupyterHub"]["load_groups"] == {"companion-facilitators": {"users": []}}
    assert SERVICE_SCOPE in config["Spawner"]["server_token_scopes"]
    assert config["JupyterHub"]["authenticator_class"] == "ltiauthenticator.lti11.auth.LTI11Authenticator"
    assert config["LTI11Authenticator"]["username_key"] == "custom_canvas_user_login_id"
    # The LTI secret comes from a Kubernetes Secret.
    assert hub["extraEnv"]["LTI11_SHARED_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "companion-lti"


def test_z2jh_learners_pods_reach_the_service_and_never_get_the_database_url():
    singleuser = values()["singleuser"]
    env = singleuser["extraEnv"]
    assert env["COMPANION_SERVICE_URL"] == "http://companion:10101/services/companion/"
    assert env["COMPANION_IDENTITY"] == "hub"
    assert env["COMPANION_COURSE_DIR"].startswith("/home/jovyan/")
    shown = json.dumps(singleuser)
    assert "COMPANION_DB_URL" not in shown and "postgresql" not in shown and "companion-db" not in shown
    # Their network policy lets them reach the companion pods on the service's port.
    (rule,) = singleuser["networkPolicy"]["egress"]
    service = manifests()["Service"]
    assert rule["to"][0]["podSelector"]["matchLabels"] == service["spec"]["selector"]
    assert rule["ports"][0]["port"] == service["spec"]["ports"][0]["port"] == 10101


def test_the_companion_pod_alone_holds_the_database_url_from_a_secret():
    deployment = manifests()["Deployment"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["companion", "hub-service"]
    env = {item["name"]: item for item in container["env"]}
    assert env["COMPANION_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "companion-db", "key": "url"}
    # The token the chart made for hub.services.companion, and what the hub would give a service it starts.
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hub", "key": "hub.services.companion.apiToken"}
    assert env["JUPYTERHUB_SERVICE_PREFIX"]["value"] == "/services/companion/"
    assert env["JUPYTERHUB_CLIENT_ID"]["value"] == "service-companion"
    assert env["JUPYTERHUB_API_URL"]["value"] == "http://hub:8081/hub/api"
    assert env["JUPYTERHUB_SERVICE_URL"]["value"].endswith(":10101")
    assert pod["metadata"]["labels"]["hub.jupyter.org/network-access-hub"] == "true"
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "companion"
    # The hub pod does not get it either.
    assert "COMPANION_DB_URL" not in json.dumps(values()["hub"])


def test_the_learners_image_installs_the_package_so_its_template_is_enabled():
    dockerfile = (DEPLOY / "Dockerfile.singleuser").read_text()
    assert "quay.io/jupyter/base-notebook" in dockerfile
    install = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert install and '"/tmp/companion[hub]"' in install[0] and "nbgitpuller" in install[0]
    assert " -e " not in install[0], "a regular install: an editable one installs no data files, so no server configuration"
    assert "git" in dockerfile.split("apt-get install", 1)[1].splitlines()[0]
    assert values()["singleuser"]["image"]["name"] in manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]


# --- the Voila template in any Jupyter server ---------------------------------------------------

CONFIG_JSON = REPO / "tools" / "jupyter-config" / "supervisor-companion.json"


def test_installing_the_package_enables_its_jupyter_server_extension():
    from companion import jupyter_extension, server

    data_files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data_files["etc/jupyter/jupyter_server_config.d"] == [str(CONFIG_JSON.relative_to(REPO))]
    assert json.loads(CONFIG_JSON.read_text()) == {"ServerApp": {"jpserver_extensions": {"companion.jupyter_extension": True}}}
    assert jupyter_extension._jupyter_server_extension_points() == [{"module": "companion.jupyter_extension"}]
    # The same template and page extensions as `companion serve`.
    assert jupyter_extension.TEMPLATE_SOURCE == server.TEMPLATE_SOURCE and jupyter_extension.TEMPLATE == server.TEMPLATE
    assert jupyter_extension.PAGE_EXTENSIONS == server.PAGE_EXTENSIONS


def test_the_wheel_installs_the_server_configuration_and_only_the_package(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "tools", source / "tools", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "node_modules"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    config = [n for n in names if n.endswith(".data/data/etc/jupyter/jupyter_server_config.d/supervisor-companion.json")]
    assert len(config) == 1, "the wheel puts the server configuration in <prefix>/etc/jupyter"
    assert json.loads(zipfile.ZipFile(wheel).read(config[0])) == json.loads(CONFIG_JSON.read_text())
    assert "companion/jupyter_extension.py" in names and "companion/templates/companion/index.html.j2" in names
    assert "companion/frontend/page-scripts.js" in names and "companion/frontend/page-scripts.css" in names, "the page's front end"
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n and ".data/" not in n} == {"companion"}


def test_the_template_folder_links_the_courses_theme_and_falls_back_to_a_neutral_one(tmp_path):
    from companion.jupyter_extension import NEUTRAL_THEME, TEMPLATE_SOURCE, write_template

    root = write_template(tmp_path / "jupyter", course_dir=tmp_path / "course")
    folder = root / "voila" / "templates" / "companion"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*(p.name for p in TEMPLATE_SOURCE.iterdir()), "theme.css", "static"])
    assert sorted(p.name for p in (folder / "static").iterdir()) == ["page-scripts.css", "page-scripts.js"], "the front end (companion.page_scripts)"
    assert (folder / "theme.css").is_symlink() and os.readlink(folder / "theme.css") == str(tmp_path / "course" / "course" / "theme.css")
    assert (root / "nbconvert" / "templates" / "companion" / "theme.css").read_text() == NEUTRAL_THEME
    # Without a course, no link: the neutral theme is the only one.
    root = write_template(tmp_path / "jupyter", course_dir=None)
    assert not (folder / "theme.css").exists() and not (folder / "theme.css").is_symlink()


NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "id": "hello", "metadata": {}, "outputs": [], "source": "print('hello from the notebook')"}],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def federated_extensions(page: str) -> set[str]:
    """The JupyterLab extensions a Voila page loads (its page config's federated_extensions)."""
    start = page.index('"federated_extensions": ') + len('"federated_extensions": ')
    listed, _ = json.JSONDecoder().raw_decode(page, start)
    return {extension["name"] for extension in listed}


def kernel_websocket_extensions(port: int, token: str) -> str:
    """Start a kernel on the server at ``port``, open its websocket offering compression; the extensions agreed."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/kernels", data=b"{}", method="POST",
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        kernel = json.load(response)["id"]

    async def agreed() -> str:
        url = f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels"
        socket = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}), compression_options={})
        socket.close()
        return socket.headers.get("Sec-WebSocket-Extensions", "")

    return run_in_own_loop(agreed)


@pytest.mark.parametrize("configured, expected", [
    ({}, {}),  # not set: compressed
    ({"websocket_compression_options": None}, None),  # the administrator turned it off
    ({"websocket_compression_options": {"compression_level": 1}}, {"compression_level": 1}),
])
def test_the_extension_compresses_kernel_websockets_unless_the_server_is_configured_otherwise(tmp_path, monkeypatch, configured, expected):
    from jupyter_server.serverapp import ServerApp

    from companion.jupyter_extension import _load_jupyter_server_extension

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "config"))
    kept = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    try:
        server = ServerApp(config=Config({"ServerApp": configured}), root_dir=str(tmp_path))
        server.initialize(argv=[], find_extensions=False, new_httpserver=False)
        _load_jupyter_server_extension(server)
    finally:
        for number, handler in kept.items():  # initializing a server set its own: this test process keeps its own
            signal.signal(number, handler)
    assert server.web_app.settings["websocket_compression_options"] == expected


@pytest.mark.parametrize("enabled_by", ["installed configuration", "hub's spawner arguments"])
def test_a_plain_jupyter_server_shows_pages_in_the_companion_template(tmp_path, monkeypatch, enabled_by):
    """A learner's server: `jupyter server` with Voila, no JUPYTER_PATH, the course pulled after it started."""
    config_dir, root, course = tmp_path / "config", tmp_path / "home", tmp_path / "home" / "leadership"
    root.mkdir()
    (root / "hello.ipynb").write_text(json.dumps(NOTEBOOK))
    (config_dir / "jupyter_server_config.d").mkdir(parents=True)
    args = []
    if enabled_by == "installed configuration":
        # Where installing the package puts it, as a config folder (the wheel's goes to <prefix>/etc/jupyter).
        shutil.copy2(CONFIG_JSON, config_dir / "jupyter_server_config.d")
    else:
        args = list(hub_config(monkeypatch).Spawner.args)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPANION_", "JUPYTERHUB_", "JUPYTER_"))}
    env.update(
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        COMPANION_COURSE_DIR=str(course),  # not there yet: nbgitpuller pulls it after the server starts
    )
    port, token = free_port(), "t0ken-for-the-test"
    command = [
        sys.executable, "-m", "jupyter_server", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1", "--ServerApp.open_browser=False", f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}", *(["--allow-root"] if os.geteuid() == 0 else []), *args,
    ]
    log = open(tmp_path / "server.log", "w+")
    process = subprocess.Popen(command, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def render() -> str:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/voila/render/hello.ipynb", headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.read().decode()

    try:
        wait_for_server(f"http://127.0.0.1:{port}/api/status", process, timeout=120)
        page = render()
        assert "hello from the notebook" in page
        assert 'var PREFIX = "companion:v1:"' in page, "the template's page script (companion.js)"
        assert "cdn.jsdelivr.net/npm/@fortawesome" not in page, "the template's notebook_css block"
        assert "The neutral theme of the Voila template" in page
        assert federated_extensions(page) == set(PAGE_EXTENSIONS), "only the widget manager's JupyterLab extensions"
        # The service worker that keeps the page's scripts in the browser, at the top of the server's URL.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/companion-worker.js", timeout=30) as response:
            assert response.headers["Content-Type"].startswith("text/javascript")
            assert b'source: "cache"' in response.read()
        # A kernel's websocket sends its messages compressed (a page's widget states are tens of KB of JSON).
        assert "permessage-deflate" in kernel_websocket_extensions(port, token)
        # nbgitpuller pulls the course: the next page has the course's theme, without a restart.
        (course / "course").mkdir(parents=True)
        (course / "course" / "theme.css").write_text("/* the course's own theme: 7d3f */\n")
        page = render()
        assert "the course's own theme: 7d3f" in page and "The neutral theme" not in page
    except Exception:
        log.flush()
        print(Path(log.name).read_text(errors="replace")[-5000:])
        raise
    finally:
        stop_process_group(process)
        log.close()
    # The template's folder, named in the server's log, is removed when the server stops.
    (folder,) = re.findall(r"companion: Voila template 'companion' from (\S+)", (tmp_path / "server.log").read_text())
    assert not Path(folder).exists()
