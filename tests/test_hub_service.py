"""The companion hub service under a real JupyterHub: each hub token reaches only its owner's work.

A real JupyterHub (its configurable-http-proxy included) starts ``companion
hub-service`` as a managed service. Learners' tokens are made by the hub for
users alice and bob, as the hub makes their servers' tokens; the pages' own
client (:class:`companion.hub.client.RemoteStore`) talks to the service.
No single-user servers are spawned here (tests/test_hub_e2e.py does that).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, make_course, stop_process_group, wait_for_server

ADMIN_TOKEN = "companion-test-admin-token-0123456789"


def hub_config(folder: Path, course: Path, hub_port: int, service_port: int) -> str:
    companion = Path(sys.executable).with_name("companion")
    return f"""
c.JupyterHub.bind_url = "http://127.0.0.1:{hub_port}"
c.JupyterHub.hub_port = {free_port()}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
c.JupyterHub.db_url = "sqlite:///{folder / 'hub.sqlite'}"
c.JupyterHub.cookie_secret_file = "{folder / 'cookie_secret'}"
c.JupyterHub.pid_file = "{folder / 'hub.pid'}"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {{"alice", "bob", "lee"}}
c.JupyterHub.load_groups = {{"companion-facilitators": {{"users": ["lee"]}}}}
c.JupyterHub.load_roles = [
    {{"name": "user", "scopes": ["self", "access:services!service=companion"]}},
    {{"name": "companion-service", "services": ["companion"], "scopes": ["read:groups", "read:users:groups", "read:users:name"]}},
    {{"name": "test-admin", "services": ["test-admin"], "scopes": ["admin:users", "tokens", "admin:groups"]}},
]
c.JupyterHub.services = [
    {{"name": "test-admin", "api_token": "{ADMIN_TOKEN}"}},
    {{
        "name": "companion",
        "url": "http://127.0.0.1:{service_port}",
        "command": ["{companion}", "hub-service"],
        "environment": {{
            "COMPANION_COURSE_DIR": "{course}",
            "COMPANION_HOME": "{course / 'reflections'}",
            "PATH": "{os.environ['PATH']}",
        }},
        "oauth_no_confirm": True,
    }},
]
"""


def wait_for_hub(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Poll until the hub itself answers through its proxy (the proxy answers 404 until the hub's route is in)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterHub exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200 and "version" in json.loads(answer.read()):
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"JupyterHub did not answer at {url} within {timeout} s")


class Hub:
    """A real JupyterHub with the companion service, in its own process group."""

    def __init__(self, folder: Path, course: Path):
        if not shutil.which("configurable-http-proxy"):
            pytest.fail("configurable-http-proxy is not installed: run tools/setup-tests.sh (npm install -g configurable-http-proxy).")
        self.port, self.service_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.service = f"http://127.0.0.1:{self.service_port}/services/companion/"
        config = folder / "jupyterhub_config.py"
        config.write_text(hub_config(folder, course, self.port, self.service_port))
        self.log = open(folder / "hub.log", "w+")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPANION_", "JUPYTERHUB_"))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=folder, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_hub(f"{self.url}/hub/api", self.process)
            wait_for_server(f"{self.service}api/store/whoami", self.process, timeout=180)
        except Exception:
            output = self.output()
            self.stop()
            raise RuntimeError(f"JupyterHub with the companion service did not start:\n{output[-6000:]}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/hub/api{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"token {ADMIN_TOKEN}"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"{}")

    def token(self, user: str, scopes: list[str] | None = None) -> str:
        """A token the hub makes for ``user``, as it makes their server's (the service's scope by default)."""
        scopes = ["access:services!service=companion"] if scopes is None else scopes
        return self.api("POST", f"/users/{user}/tokens", {"scopes": scopes, "note": "test"})["token"]

    def stop(self) -> None:
        stop_process_group(self.process)
        self.log.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hub")
    course = make_course(folder / "course")
    hub = Hub(folder, course)
    try:
        for user in ("alice", "bob", "lee"):
            try:
                hub.api("POST", f"/users/{user}")
            except urllib.error.HTTPError as error:
                assert error.code == 409, f"{error}\n{hub.output()[-4000:]}"  # 409: already there (lee, from the group)
        yield hub
    finally:
        hub.stop()


def post(url: str, body: bytes, token: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"token {token}"} if token else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers, method="POST"), timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_each_learner_saves_and_reads_only_their_own_work_through_the_service(hub):
    from companion.hub.client import RemoteStore

    alice, bob = RemoteStore(hub.service, hub.token("alice")), RemoteStore(hub.service, hub.token("bob"))
    assert (alice.username, bob.username) == ("alice", "bob")

    saved = alice.save("alice", "s1", "s1-why", "responded", {"text": "alice private words"}, done=True)
    assert saved.value == {"text": "alice private words"} and saved.done and saved.username == "alice"
    bob.save("bob", "s1", "s1-why", "responded", {"text": "bob's own words"}, done=True, shared=True)

    assert alice.response("alice", "s1-why").value == {"text": "alice private words"}
    assert {k: r.value for k, r in bob.responses("bob", "s1").items()} == {"s1-why": {"text": "bob's own words"}}
    with pytest.raises(Exception, match="belongs to alice"):
        alice.responses("bob")  # the client will not even ask


def test_naming_another_learner_in_the_request_still_answers_for_the_token_owner(hub):
    token = hub.token("alice")
    status, answer = post(f"{hub.service}api/store/responses", json.dumps({"username": "bob", "session_id": "s1"}).encode(), token)
    assert status == 200
    assert all(r["username"] == "alice" for r in answer.values())
    assert "bob's own words" not in json.dumps(answer)


def test_a_missing_expired_or_unscoped_token_is_told_to_sign_in_again_and_records_nothing(hub):
    from companion.errors import LinkError
    from companion.hub.client import RemoteStore

    before = hub_events(hub)
    for token in (None, "not-a-token", hub.token("alice", scopes=["read:users:name!user=alice"])):
        status, answer = post(f"{hub.service}api/store/save", json.dumps({"session_id": "s1", "activity_id": "s1-why", "verb": "responded", "value": "x"}).encode(), token)
        assert status == 403, (token, answer)
        assert "Sign in again through Canvas" in answer["error"]
    with pytest.raises(LinkError, match="Sign in again through Canvas"):
        RemoteStore(hub.service, "")
    with pytest.raises(LinkError, match="Sign in again through Canvas"):
        RemoteStore(hub.service, "expired-or-revoked")
    assert hub_events(hub) == before


@pytest.mark.parametrize(
    "body, words",
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"session_id": "s9", "activity_id": "s1-why", "verb": "responded", "value": "x"}).encode(), "No session 's9'"),
        (json.dumps({"session_id": "s1", "activity_id": "<script>", "verb": "responded", "value": "x"}).encode(), "'activity_id' must be an id"),
        (json.dumps({"session_id": "s1", "activity_id": "s1-why", "verb": "responded", "value": "a\u0000b"}).encode(), "NUL character"),
        (json.dumps({"session_id": "s1", "activity_id": "s1-why", "verb": "responded", "value": "x", "done": "yes"}).encode(), "true or false"),
    ],
)
def test_a_malformed_request_gets_a_clear_4xx_and_changes_nothing(hub, body, words):
    token = hub.token("alice")
    before = hub_events(hub)
    status, answer = post(f"{hub.service}api/store/save", body, token)
    assert 400 <= status < 500
    assert words in answer["error"]
    assert hub_events(hub) == before


def test_an_unknown_method_is_a_404_that_names_it(hub):
    status, answer = post(f"{hub.service}api/store/drop_everything", b"{}", hub.token("alice"))
    assert status == 404 and "drop_everything" in answer["error"]


def hub_events(hub) -> int:
    """Events in the service's store (SQLite in the course's data home, read from the test's side)."""
    from companion.store import open_store

    home = Path(hub.log.name).parent / "course" / "reflections"
    return open_store(f"sqlite:///{home / 'companion.db'}").count_events()


def hub_login(page, hub, user: str, then: str) -> None:
    """Sign in on the hub's own login page as ``user`` (any password: the test hub's dummy authenticator), then go to ``then``."""
    page.goto(then, timeout=120_000)
    page.wait_for_selector("#username_input", timeout=60_000)
    page.fill("#username_input", user)
    page.fill("#password_input", "any")
    page.click("#login_submit")


def test_the_facilitator_group_opens_the_dashboard_through_the_hub_login_and_no_one_else(hub, chromium):
    from companion.hub.client import RemoteStore

    alice, bob = RemoteStore(hub.service, hub.token("alice")), RemoteStore(hub.service, hub.token("bob"))
    alice.save("alice", "s1", "s1-private", "responded", {"text": "alice keeps this to herself"}, done=True, shared=False)
    bob.save("bob", "s1", "s1-why", "responded", {"text": "bob shares this with lee"}, done=True, shared=True)
    dashboard = f"{hub.url}/services/companion/dashboard"

    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(120_000)
    hub_login(page, hub, "lee", dashboard)
    page.wait_for_selector(".companion-dashboard", timeout=180_000)
    assert "Signed in as facilitator lee" in page.inner_text("body")
    assert "/services/companion/dashboard?facilitator=" in page.url
    page.get_by_label("Learner username").fill("bob")
    page.get_by_role("button", name="Show record").click()
    page.locator(".companion-shared-reflection").wait_for()
    assert page.locator(".companion-reflection-text").inner_text() == "bob shares this with lee"
    page.get_by_label("Learner username").fill("alice")
    page.get_by_role("button", name="Show record").click()
    page.get_by_text("private: not shared").first.wait_for()
    assert "alice keeps this to herself" not in page.inner_text("body")
    context.close()

    # A learner signed in to the same hub is told the dashboard is for facilitators, and sees none of it.
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(120_000)
    hub_login(page, hub, "alice", dashboard)
    page.get_by_role("heading", name="This dashboard is for facilitators").wait_for()
    body = page.inner_text("body")
    assert "alice is not in the hub group companion-facilitators" in body
    assert "bob shares this" not in body and page.locator(".companion-dashboard").count() == 0
    context.close()


def test_leaving_the_facilitator_group_closes_the_dashboard_at_the_next_action(hub, chromium):
    hub.api("POST", "/groups/companion-facilitators/users", {"users": ["bob"]})
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(120_000)
    hub_login(page, hub, "bob", f"{hub.url}/services/companion/dashboard")
    page.wait_for_selector(".companion-dashboard", timeout=180_000)
    assert "Signed in as facilitator bob" in page.inner_text("body")

    hub.api("DELETE", "/groups/companion-facilitators/users", {"users": ["bob"]})
    page.get_by_label("Learner username").fill("alice")
    page.get_by_role("button", name="Show record").click()
    page.get_by_text("bob is not in the hub group companion-facilitators").wait_for()
    context.close()


def test_a_page_whose_service_is_down_is_told_its_work_is_kept_and_will_be_retried():
    # What a learner's page meets when the service is stopped or restarting: StoreUnavailable, which the page
    # answers with "kept on this page and will be retried" (companion.activities), never a traceback.
    from companion.errors import StoreUnavailable
    from companion.hub.client import RemoteStore

    with pytest.raises(StoreUnavailable, match="could not be reached just now; nothing was changed"):
        RemoteStore(f"http://127.0.0.1:{free_port()}/services/companion/", "a-token")
