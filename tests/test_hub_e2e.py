"""The companion under a real JupyterHub: each learner's work is theirs alone, and the facilitator sees what was shared.

One hub (tests/hubfixtures.py) with configurable-http-proxy, the companion hub
service and its PostgreSQL, and three real local users: the learners alice and
bob, and lee in the hub group ``companion-facilitators``. The learners open the
first session through the hub in headless Chromium, in their own single-user
servers, which hold no database credentials: their pages save through the
service, which answers each token for its owner only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from companion.store import open_store
from conftest import open_session, wait_until
from hubfixtures import BIN, FIRST_SESSION_PAGE, HubDeployment, fill_login, run_as, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

WHY = "What is your why for leading with racial equity?"  # shared below
KEEP = "What would you rather keep to yourself?"  # kept private
WORDS = {
    "alice": {"private": "alice private words", "shared": "alice shared words"},
    "bob": {"private": "bob private words", "shared": "bob shared words"},
}
SESSION_LINK = f"/hub/user-redirect/voila/render/{FIRST_SESSION_PAGE}"  # the hub form of a session's link in Canvas


@pytest.fixture(scope="module")
def hub():
    deployment = HubDeployment(learners=("alice", "bob"), facilitators=("lee",))
    yield deployment
    deployment.stop()


@pytest.fixture
def browser_of(chromium):
    """A browser of one's own per person (their own cookies), closed at the end."""
    contexts = []

    def open_for(name: str):
        context = chromium.new_context(viewport={"width": 1100, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        return page

    yield open_for
    for context in contexts:
        context.close()


def activity(page, prompt: str):
    return page.locator(".companion-activity", has=page.get_by_label(prompt))


def write_and_save(page, prompt: str, text: str, share: bool = False) -> None:
    """Write ``text`` in the reflection ``prompt``, tick "Share with my facilitator" if ``share``, press its Save."""
    box = activity(page, prompt)
    box.get_by_label(prompt).fill(text)
    if share:
        box.get_by_label("Share with my facilitator").check()
    box.get_by_role("button", name="Save").click()
    status = box.locator(".companion-status")
    wait_until(lambda: status.inner_text().startswith("Saved at"), timeout=60, what=f"'{prompt}' to say it saved")


def texts_on(page) -> str:
    """Everything a person sees on the page: its text and what the text boxes hold."""
    return page.inner_text("body") + "\n" + "\n".join(page.eval_on_selector_all("textarea, input[type=text]", "boxes => boxes.map(b => b.value)"))


def open_session_through_the_hub(page, hub: HubDeployment, name: str) -> None:
    """As from the session's link in Canvas: the hub's login, then the hub starts their server and opens the page."""
    page.goto(hub.url + SESSION_LINK)
    fill_login(page, hub, name)
    page.wait_for_selector(".companion-workbook", timeout=240_000)
    assert page.url.startswith(hub.page_url(name)), f"{name} ended at {page.url}, not their own server's page"


def ask_the_service(hub: HubDeployment, method: str, token: str | None, **arguments):
    """``POST <service>/api/store/<method>`` as a learner's page does; (status, the answer's text)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    request = urllib.request.Request(f"{hub.service_url}api/store/{method}", data=json.dumps(arguments).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_under_jupyterhub_each_learner_sees_only_their_own_work_and_the_facilitator_only_what_was_shared(hub, browser_of):
    with hub.log_on_failure():
        store = open_store(hub.postgres.url)  # the service's database, as the test (root) reads it

        # alice opens session 1 from its link, signs in to the hub, and her own server shows the page.
        alice = browser_of("alice")
        open_session_through_the_hub(alice, hub, "alice")
        assert "Signed in as alice" in alice.inner_text(".companion-workbook")
        write_and_save(alice, KEEP, WORDS["alice"]["private"])
        write_and_save(alice, WHY, WORDS["alice"]["shared"], share=True)
        wait_until(lambda: (r := store.response("alice", "s1-why")) and r.shared and r.value == {"text": WORDS["alice"]["shared"]}, what="alice's shared reflection in the store")
        wait_until(lambda: (r := store.response("alice", "s1-private")) and not r.shared and r.value == {"text": WORDS["alice"]["private"]}, what="alice's private one")

        # bob opens the same session in his own server: none of alice's words, then his own.
        bob = browser_of("bob")
        open_session_through_the_hub(bob, hub, "bob")
        assert "Signed in as bob" in bob.inner_text(".companion-workbook")
        assert "alice" not in texts_on(bob)
        assert bob.get_by_label(KEEP).input_value() == "" and bob.get_by_label(WHY).input_value() == ""
        write_and_save(bob, KEEP, WORDS["bob"]["private"])
        write_and_save(bob, WHY, WORDS["bob"]["shared"], share=True)
        wait_until(lambda: (r := store.response("bob", "s1-why")) and r.shared and r.value == {"text": WORDS["bob"]["shared"]}, what="bob's shared reflection in the store")

        # Reloaded, each page shows its learner's own words, as saved, and never the other's.
        for name, page, other in (("alice", alice, "bob"), ("bob", bob, "alice")):
            open_session(page, hub.page_url(name))
            assert page.get_by_label(KEEP).input_value() == WORDS[name]["private"]
            assert page.get_by_label(WHY).input_value() == WORDS[name]["shared"]
            assert activity(page, WHY).get_by_label("Share with my facilitator").is_checked()
            assert not activity(page, KEEP).get_by_label("Share with my facilitator").is_checked()
            assert other not in texts_on(page), f"{name}'s page shows something of {other}'s"
        # The pages wear the companion's look in a learner's own server (its template and page script), and
        # "Back to all sessions" opens her home page there, with both sessions and where she is.
        assert "companion-workbook" in alice.content() and alice.evaluate("() => !!document.querySelector('.companion-page')")
        assert "jsdelivr" not in alice.content(), "the companion's template, not Voila's own (which loads fonts from a CDN)"
        alice.get_by_role("link", name="Back to all sessions").first.click()
        alice.wait_for_selector(".companion-home", timeout=180_000)
        home = alice.inner_text(".companion-home")
        assert "Signed in as alice" in home and "Session 1" in home and "Session 2" in home
        # Nor can one open the other's server.
        answer = alice.goto(hub.page_url("bob"))
        assert answer.status in (403, 404) and alice.locator(".companion-workbook").count() == 0
        assert "bob private words" not in alice.inner_text("body")

        # alice's server holds no way into the database: no URL, no password, in its environment or its kernels'.
        secrets = (hub.postgres.password, hub.postgres.admin_password, "postgresql", "COMPANION_DB_URL")
        for process in [hub.server_process("alice"), *hub.server_process("alice").children(recursive=True)]:
            environment = "\n".join(f"{k}={v}" for k, v in process.environ().items())
            assert not [s for s in secrets if s in environment], f"alice's process {process.pid} ({process.name()}) has database credentials"
        # ... and as alice, without the password, PostgreSQL lets her in nowhere.
        for role in ("companion", "postgres", "alice"):
            tried = run_as("alice", [str(BIN / "python"), "-c", f"import psycopg2; psycopg2.connect(host='127.0.0.1', port={hub.postgres.port}, user='{role}', dbname='companion')"])
            assert tried.returncode != 0 and "password" in tried.stderr, f"alice connected to PostgreSQL as {role}:\n{tried.stdout}{tried.stderr}"

        # With her server's own hub token, the service answers with alice's work only, however she asks for bob's.
        token = hub.server_environment("alice")["JUPYTERHUB_API_TOKEN"]
        status, answer = ask_the_service(hub, "whoami", token)
        assert (status, json.loads(answer)) == (200, {"username": "alice"})
        status, answer = ask_the_service(hub, "responses", token, session_id="s1")
        assert status == 200 and WORDS["alice"]["private"] in answer, "her own work, private included, is hers to read"
        asking_for_bob = [
            ("responses", {"session_id": "s1", "username": "bob"}),
            ("responses", {"user": "bob", "learner": "bob", "name": "bob"}),
            ("response", {"activity_id": "s1-private", "username": "bob"}),
            ("response", {"activity_id": "s1-why", "user": "bob"}),
            ("learner", {"username": "bob"}),
            ("feedback_received", {"username": "bob"}),
            ("responses/bob", {"session_id": "s1"}),
        ]
        for method, arguments in asking_for_bob:
            status, answer = ask_the_service(hub, method, token, **arguments)
            assert "bob private words" not in answer and "bob shared words" not in answer, f"{method} {arguments} gave alice bob's words"
            if status == 200:
                for item in _responses_in(json.loads(answer)):
                    assert item.get("username") == "alice", f"{method} {arguments} answered with {item}"
        # Without a token, or with a made-up one, nothing at all.
        for wrong in (None, "not-a-token"):
            status, answer = ask_the_service(hub, "responses", wrong, session_id="s1")
            assert status in (401, 403) and "private words" not in answer and "shared words" not in answer

        # lee, a facilitator, signs in to the hub and opens the dashboard: both learners, and only what they shared.
        lee = browser_of("lee")
        sign_in(lee, hub, "lee", next_path="/services/companion/dashboard")
        lee.wait_for_selector(".companion-dashboard", timeout=180_000)
        assert "Signed in as facilitator lee" in lee.inner_text(".companion-dashboard")
        queue = lee.locator(".companion-queue-item")
        wait_until(lambda: queue.count() >= 2, what="the queue of shared reflections waiting for feedback")
        waiting = "\n".join(queue.all_inner_texts())
        assert "alice" in waiting and "bob" in waiting and "shared reflection: Your why" in waiting
        for name in ("alice", "bob"):
            lee.get_by_label("Learner username").fill(name)
            lee.get_by_role("button", name="Show record").click()
            lee.locator(".companion-record-name", has_text=f"({name})").wait_for()
            assert lee.locator(".companion-reflection-text").all_inner_texts() == [WORDS[name]["shared"]]
            assert "private: not shared" in lee.inner_text(".companion-dashboard")
        seen = texts_on(lee)
        assert "alice private words" not in seen and "bob private words" not in seen

        # alice opening the dashboard's address is refused with words, and shown nothing of it.
        answer = alice.goto(hub.dashboard_url())
        assert answer.status == 403
        assert alice.get_by_role("heading", level=1).inner_text() == "This dashboard is for facilitators"
        refusal = alice.inner_text("body")
        assert "alice is not in the hub group companion-facilitators" in refusal
        assert "bob" not in refusal and "shared words" not in refusal and alice.locator(".companion-dashboard").count() == 0


def _responses_in(answer) -> list[dict]:
    """Every stored response (``"~kind": "Response"``) anywhere in a service answer."""
    found = []
    if isinstance(answer, dict):
        if answer.get("~kind") == "Response":
            found.append(answer)
        for value in answer.values():
            found.extend(_responses_in(value))
    elif isinstance(answer, list):
        for value in answer:
            found.extend(_responses_in(value))
    return found
