"""The facilitator dashboard: its figures for a seeded cohort, who may open it, and what it shows."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest

import cohort
from companion.catalog import load_catalog
from companion.cli import main
from companion.dashboard import Dashboard, chart_html, facilitator, facilitator_link, figures, learner_record, stragglers_html
from companion.errors import LinkError, SettingsError
from companion.identity import server_secret, sign
from companion.progress import learner_progress, session_rules
from companion.settings import load_settings
from companion.store import open_store

LEARNERS = 1200


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    root = cohort.make_evaluation_course(tmp_path_factory.mktemp("dash") / "course")
    settings = load_settings(root)
    store = open_store(f"sqlite:///{root / 'reflections' / 'companion.db'}")
    now = datetime.now(timezone.utc)
    plans = cohort.plan_cohort(LEARNERS, now)
    cohort.seed(store, plans)
    return store, load_catalog(settings), plans, now


def test_the_figures_of_a_1200_learner_cohort_match_the_plan(seeded):
    store, catalog, plans, now = seeded
    numbers = figures(store, catalog, now=now, listed=None)

    # Completion by session, for everyone.
    overall = numbers.overall
    assert overall.learners == len(plans)
    expected = cohort.expected_sessions(plans)
    assert {s.session_id: (s.complete, s.in_progress) for s in overall.sessions} == expected
    for s in overall.sessions:
        assert s.not_started == len(plans) - sum(expected[s.session_id])
        assert s.rate == pytest.approx(expected[s.session_id][0] / len(plans))

    # The series rate: the "89 percent" figure.
    series = sum(cohort.series_complete(p) for p in plans)
    assert overall.series_complete == series
    assert overall.series_rate == pytest.approx(series / len(plans))
    assert 0.3 < overall.series_rate < 0.8, "the plan makes a mixed cohort"

    # Completion by cohort.
    by_cohort = {}
    for plan in plans:
        by_cohort.setdefault(plan.cohort, []).append(plan)
    assert [g.cohort for g in numbers.cohorts] == sorted((c for c in by_cohort if c), key=str.lower) + ([""] if "" in by_cohort else [])
    for group in numbers.cohorts:
        members = by_cohort[group.cohort]
        assert group.learners == len(members)
        assert group.series_complete == sum(cohort.series_complete(p) for p in members)
        assert {s.session_id: (s.complete, s.in_progress) for s in group.sessions} == cohort.expected_sessions(members)
    assert sum(g.learners for g in numbers.cohorts) == len(plans)

    # Who has not started, who has stalled, and when each was last active.
    assert {p.username for p in numbers.not_started} == cohort.not_started(plans)
    assert {p.username for p in numbers.stalled} == cohort.stalled(plans, now)
    assert numbers.stalled and numbers.not_started
    planned = {p.username: p for p in plans}
    for person in numbers.not_started + numbers.stalled:
        plan = planned[person.username]
        assert person.last_active == plan.last_active
        assert person.cohort == plan.cohort
        assert person.at_session == (1 if plan.states["s1"] != "complete" else 2)
    never = [p for p in numbers.not_started if p.last_active is None]
    assert never, "some learners on the roster never opened a page"
    actives = [p.last_active for p in numbers.stalled]
    assert actives == sorted(actives), "the longest stalled come first"
    assert (numbers.not_started_count, numbers.stalled_count) == (len(numbers.not_started), len(numbers.stalled))

    # The page lists the first few of each, in the same order, and counts everyone.
    page = figures(store, catalog, now=now, listed=5)
    assert (page.not_started, page.stalled) == (numbers.not_started[:5], numbers.stalled[:5])
    assert (page.not_started_count, page.stalled_count) == (numbers.not_started_count, numbers.stalled_count)


def test_the_bulk_figures_agree_with_one_learners_progress(seeded):
    store, catalog, plans, now = seeded
    numbers = figures(store, catalog, now=now, listed=None)
    for plan in plans[::60]:
        statuses = [p.status for p in learner_progress(store, catalog, plan.username)]
        assert statuses == [plan.states["s1"], plan.states["s2"]]
    assert numbers.overall.learners == len(store.learners())


def test_a_learners_record_has_only_what_they_shared(course):
    store = open_store(course.db_url)
    store.save("bea", "s1", "s1-why", "responded", {"text": "Shared words"}, done=True, shared=True)
    store.save("bea", "s1", "s1-private", "responded", {"text": "PRIVATE words"}, done=True, shared=False)
    store.save("bea", "s1", "s1-goal", "responded", {"goal": "PRIVATE goal", "measure": "m", "target": "2025-01-01"}, done=True)
    store.save("bea", "s1", "s1-end", "answered", {"selected": ["A balanced budget"], "correct": False}, done=True)
    store.add_feedback("bea", "s1-why", "lee", "Thank you.")
    record = learner_record(store, load_catalog(course), "bea")
    items = {item.activity.id: item for item in record.items["s1"]}
    assert items["s1-why"].text == "Shared words" and items["s1-why"].shared
    assert [f.text for f in items["s1-why"].feedback] == ["Thank you."]
    assert items["s1-private"].done and items["s1-private"].text is None
    assert items["s1-end"].done and items["s1-end"].text is None
    assert "PRIVATE" not in repr(record)
    assert [p.status for p in record.progress] == ["in progress", "not started"]
    assert learner_record(store, load_catalog(course), "nobody") is None


def test_the_figures_agree_on_sqlite_and_postgresql(store_url, tmp_path):
    root = cohort.make_evaluation_course(tmp_path / "course")
    store, catalog = open_store(store_url), load_catalog(load_settings(root))
    now = datetime.now(timezone.utc)
    plans = cohort.plan_cohort(300, now, seed=7)
    cohort.seed(store, plans)
    numbers = figures(store, catalog, now=now, listed=None)
    assert {s.session_id: (s.complete, s.in_progress) for s in numbers.overall.sessions} == cohort.expected_sessions(plans)
    assert numbers.overall.series_complete == sum(cohort.series_complete(p) for p in plans)
    assert {p.username for p in numbers.stalled} == cohort.stalled(plans, now)
    assert {p.username for p in numbers.not_started} == cohort.not_started(plans)
    planned = {p.username: p.last_active for p in plans if p.last_active}
    assert store.last_active() == planned


def test_a_bulk_save_keeps_the_rules_of_save(store_url):
    store = open_store(store_url)
    t = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
    store.save("ana", "s1", "s1-why", "responded", {"text": "saved live"}, done=True, shared=True)
    added = store.bulk_save([
        dict(username="ana", session_id="s1", activity_id="s1-why", verb="responded", value={"text": "older"}, at=t),
        dict(username="ben", session_id="s1", activity_id="s1", verb="experienced", value=None, at=t, event_only=True),
        dict(username="ben", session_id="s1", activity_id="s1-why", verb="responded", value={"text": "second"}, at=t + timedelta(minutes=2)),
        dict(username="ben", session_id="s1", activity_id="s1-why", verb="responded", value={"text": "first"}, done=True, shared=True, at=t + timedelta(minutes=1)),
    ])
    assert added == 4
    ana = store.response("ana", "s1-why")
    assert (ana.value, ana.done, ana.shared) == ({"text": "saved live"}, True, True), "an older item is an event, not the latest"
    ben = store.response("ben", "s1-why")
    assert (ben.value, ben.done, ben.shared) == ({"text": "second"}, True, True), "the latest by time; done and shared kept"
    assert ben.updated_at == t + timedelta(minutes=2)
    assert store.response("ben", "s1") is None, "an event-only item changes no response"
    assert [e.value for e in store.events("ben")] == [None, {"text": "first"}, {"text": "second"}]
    assert len(store.events("ana")) == 2


def test_progress_kept_by_the_pages_saves_is_what_a_rebuild_finds(store_url, tmp_path):
    root = cohort.make_evaluation_course(tmp_path / "course")
    store, catalog = open_store(store_url), load_catalog(load_settings(root))
    now = datetime.now(timezone.utc)
    plans = cohort.plan_cohort(150, now, seed=11)
    figures(store, catalog, now=now)  # progress built, under the notebooks' rules, before anyone saves
    version = store.progress_version()
    rules = {rule.session_id: rule for rule in session_rules(catalog)}
    for item in sorted((i for p in plans for i in p.saves), key=lambda i: i["at"]):
        if item.get("event_only"):
            store.record(item["username"], item["session_id"], item["activity_id"], item["verb"], item.get("value"))
        else:
            store.save(item["username"], item["session_id"], item["activity_id"], item["verb"], item.get("value"),
                       done=item.get("done"), shared=item.get("shared"), rule=rules[item["session_id"]])
    assert store.progress_version() == version, "the pages' saves kept the progress current: no rebuild needed"
    kept = figures(store, catalog, now=now, listed=None)
    assert {s.session_id: (s.complete, s.in_progress) for s in kept.overall.sessions} == cohort.expected_sessions(plans)
    assert kept.overall.series_complete == sum(cohort.series_complete(p) for p in plans)
    store.rebuild_progress(session_rules(catalog))
    assert figures(store, catalog, now=now, listed=None) == kept


def test_progress_is_rebuilt_when_it_was_kept_under_other_rules(course):
    store, catalog = open_store(course.db_url), load_catalog(course)
    rules = {rule.session_id: rule for rule in session_rules(catalog)}
    figures(store, catalog)
    store.save("ana", "s1", "s1-why", "responded", {"text": "mine"}, done=True, rule=rules["s1"])
    assert store.progress_version() == rules["s1"].version

    # A page still running notebooks from before a change saves under other rules.
    store.save("ana", "s1", "s1-private", "responded", {"text": "also"}, done=True, rule=replace(rules["s1"], version="before-the-change"))
    assert store.progress_version() is None, "no longer trusted"
    assert [s.in_progress for s in figures(store, catalog).overall.sessions] == [1, 0]
    assert store.progress_version() == rules["s1"].version, "rebuilt under the notebooks' rules"

    # A save that names no rule (a script, an import) leaves the progress stale too.
    store.save("ben", "s2", "s2-note", "responded", {"text": "x"}, done=True)
    assert store.progress_version() is None
    assert [s.in_progress for s in figures(store, catalog).overall.sessions] == [1, 1]


# Who may open it -------------------------------------------------------------------


def key(settings, name, **kwargs):
    return sign(name, server_secret(settings.home), purpose="facilitator", **kwargs)


def test_a_facilitator_key_opens_it_in_link_mode(course):
    assert facilitator(course, f"facilitator={key(course, 'lee')}", {"COMPANION_IDENTITY": "link"}) == "lee"


@pytest.mark.parametrize(
    "query, message",
    [
        ("", "opens only with a facilitator link"),
        ("learner=LEARNER", "opens only with a facilitator link"),
        ("facilitator=LEARNER", "not a valid facilitator link"),
        ("facilitator=lee.9999999999.forged", "not a valid facilitator link"),
        ("facilitator=EXPIRED", "has expired"),
    ],
    ids=["no key", "a learner's link", "a learner's token as a key", "forged", "expired"],
)
def test_anything_else_is_refused_in_link_mode(course, query, message):
    learner = sign("lee", server_secret(course.home))
    query = query.replace("LEARNER", learner).replace("EXPIRED", key(course, "lee", days=1, now=time.time() - 3 * 86400))
    with pytest.raises(LinkError, match=message):
        facilitator(course, query, {"COMPANION_IDENTITY": "link"})


def with_facilitators(settings, names):
    path = settings.root / "course" / "course.toml"
    path.write_text(path.read_text().replace("link_days = 120", f"link_days = 120\nfacilitators = {names!r}".replace("'", '"')))
    return load_settings(settings.root)


def test_a_learners_own_hub_server_never_opens_it_whatever_its_course_toml_says(course):
    # Under JupyterHub a learner can edit their own copy of course.toml; the dashboard is the hub service's.
    settings = with_facilitators(course, ["lee", "ana"])
    for user in ("lee", "ana"):
        with pytest.raises(LinkError, match="served by the companion service.*/services/companion/dashboard"):
            facilitator(settings, f"facilitator={key(settings, user)}", {"JUPYTERHUB_USER": user})


def test_taking_a_name_off_the_list_revokes_its_key(course):
    settings = with_facilitators(course, ["lee"])
    kim = key(settings, "kim")
    with pytest.raises(LinkError, match="kim is no longer on the list"):
        facilitator(settings, f"facilitator={kim}", {"COMPANION_IDENTITY": "link"})
    with pytest.raises(LinkError, match="kim is not on the list of facilitators"):
        facilitator_link(settings, "http://x.org", "kim")


def test_locally_a_listed_login_opens_it_and_others_need_a_key(course):
    settings = with_facilitators(course, ["lee"])
    assert facilitator(settings, "", {"COMPANION_LEARNER": "lee"}) == "lee"
    with pytest.raises(LinkError):
        facilitator(settings, "", {"COMPANION_LEARNER": "ana"})
    with pytest.raises(LinkError):
        facilitator(settings, "", {"COMPANION_IDENTITY": "link", "COMPANION_LEARNER": "lee"})


def test_the_facilitator_link_carries_a_key_for_the_dashboard(course):
    link = facilitator_link(course, "https://companion.example.org/", "lee")
    assert link.startswith("https://companion.example.org/dashboard?facilitator=")
    assert facilitator(course, link.split("?", 1)[1], {"COMPANION_IDENTITY": "link"}) == "lee"


def test_the_store_gives_a_facilitator_no_unshared_value(course):
    store = open_store(course.db_url)
    store.save("bea", "s1", "s1-why", "responded", {"text": "Shared"}, done=True, shared=True)
    store.save("bea", "s1", "s1-private", "responded", {"text": "PRIVATE"}, done=True)
    store.save("bea", "s1", "s1-private", "shared", {"text": "PRIVATE, then shared"}, shared=True)
    store.save("bea", "s1", "s1-private", "unshared", {"text": "PRIVATE again"}, shared=False)
    seen = {r.activity_id: (r.value, r.done, r.shared) for r in store.facilitator_view("bea")}
    assert seen == {"s1-why": ({"text": "Shared"}, True, True), "s1-private": (None, True, False)}
    assert [r.value for r in store.recently_shared()] == [None]


def test_the_dashboard_command_prints_a_working_facilitator_link(course, capsys):
    """Needs `companion dashboard` wired in cli.py."""
    assert main(["dashboard", "--name", "lee", "--base-url", "https://companion.example.org"]) == 0
    link = capsys.readouterr().out.strip().splitlines()[-1]
    assert link.startswith("https://companion.example.org/dashboard?facilitator=")
    assert facilitator(course, link.split("?", 1)[1], {"COMPANION_IDENTITY": "link"}) == "lee"


def test_the_dashboard_command_refuses_a_name_off_the_list(course, capsys):
    with_facilitators(course, ["kim"])
    assert main(["dashboard", "--name", "lee"]) == 2
    assert "lee is not on the list of facilitators" in capsys.readouterr().err


def test_a_malformed_facilitator_list_names_the_problem(course):
    path = course.root / "course" / "course.toml"
    path.write_text(path.read_text().replace("link_days = 120", 'link_days = 120\nfacilitators = "lee"'))
    with pytest.raises(SettingsError, match=r"\[server\] facilitators is 'lee'; write a list of usernames"):
        load_settings(course.root)


# The page, in this process (the browser tests drive the served one) -----------------


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


def html_of(widget) -> str:
    """All the HTML a widget tree shows."""
    out = [getattr(widget, "value", "")] if widget.__class__.__name__ == "HTML" else []
    for child in getattr(widget, "children", ()):
        out.append(html_of(child))
    return "".join(out)


def find(widget, kind, **match):
    found = [widget] if widget.__class__.__name__ == kind and all(getattr(widget, k) == v for k, v in match.items()) else []
    for child in getattr(widget, "children", ()):
        found += find(child, kind, **match)
    return found


HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


@pytest.fixture
def hostile_store(course):
    store = open_store(course.db_url)
    store.upsert_learners([
        {"username": "bea", "name": HOSTILE, "email": "", "cohort": "<b>Winter</b>", "department": HOSTILE, "extra": {}},
        {"username": "cy", "name": "Cy", "email": "", "cohort": "<b>Winter</b>", "department": "", "extra": {}},
    ])
    store.save("bea", "s1", "s1-why", "responded", {"text": HOSTILE}, done=True, shared=True)
    store.save("bea", "s1", "s1-private", "responded", {"text": "PRIVATE words"}, done=True)
    return store


def open_dashboard(monkeypatch, query):
    monkeypatch.setenv("COMPANION_IDENTITY", "link")
    monkeypatch.setenv("QUERY_STRING", query)
    monkeypatch.delenv("VOILA_KERNEL_ID", raising=False)
    return Dashboard()


def test_the_page_shows_learner_text_as_text_and_sends_feedback(course, hostile_store, monkeypatch):
    board = open_dashboard(monkeypatch, f"facilitator={key(course, 'lee')}")
    board.open_record("bea")
    shown = html_of(board)
    parser = Tags()
    parser.feed(shown)
    assert not {"img", "script", "b"} & set(parser.tags), "learner and roster text never becomes markup"
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in shown
    assert "&lt;b&gt;Winter&lt;/b&gt;" in shown
    assert "PRIVATE" not in shown and "private: not shared" in shown

    box = find(board, "Textarea", description="Your feedback")
    assert len(box) == 1, "one feedback box: under the one shared reflection"
    box[0].value = "Thank you <b>for this</b>."
    find(board, "Button", description="Send feedback")[0].click()
    assert [f.text for f in hostile_store.feedback("bea", "s1-why")] == ["Thank you <b>for this</b>."]
    assert "Thank you &lt;b&gt;for this&lt;/b&gt;." in html_of(board)
    assert "Feedback sent." in html_of(board)
    assert [f.author for f in hostile_store.feedback("bea", "s1-why")] == ["lee"]


def test_empty_feedback_is_not_sent_and_says_why(course, hostile_store, monkeypatch):
    board = open_dashboard(monkeypatch, f"facilitator={key(course, 'lee')}")
    board.open_record("bea")
    find(board, "Button", description="Send feedback")[0].click()
    assert "Not sent: The feedback is empty" in html_of(board)
    assert hostile_store.feedback("bea", "s1-why") == []


def test_a_learners_link_gets_an_alert_and_no_data(course, hostile_store, monkeypatch):
    board = open_dashboard(monkeypatch, f"learner={sign('bea', server_secret(course.home))}")
    shown = html_of(board)
    assert 'role="alert"' in shown and "This dashboard is for facilitators" in shown
    assert "bea" not in shown and "Winter" not in shown
    assert len(board.children) == 1 and not find(board, "Button") and not find(board, "Text")


def test_the_chart_and_lists_escape_cohort_and_names(course, hostile_store):
    numbers = figures(hostile_store, load_catalog(course), now=datetime.now(timezone.utc) + timedelta(days=30))
    chart = chart_html(numbers.cohorts[0])
    assert "&lt;b&gt;Winter&lt;/b&gt;" in chart and "<b>Winter" not in chart
    assert "0% complete" in chart
    lists = stragglers_html("Stalled", numbers.stalled, "x", "never")
    assert numbers.stalled and HOSTILE not in lists and "&lt;img" in lists


def test_taking_a_name_off_the_list_closes_an_open_dashboard_at_its_next_action(course, hostile_store, monkeypatch):
    settings = with_facilitators(course, ["lee"])
    board = open_dashboard(monkeypatch, f"facilitator={key(settings, 'lee')}")
    board.open_record("bea")
    box = find(board, "Textarea", description="Your feedback")[0]
    send = find(board, "Button", description="Send feedback")[0]

    toml = course.root / "course" / "course.toml"
    toml.write_text(toml.read_text().replace('facilitators = ["lee"]', 'facilitators = ["kim"]'))  # lee is taken off; her page stays open
    box.value = "Sent after my name was removed."
    send.click()
    assert hostile_store.feedback("bea", "s1-why") == [], "nothing is saved by a facilitator no longer on the list"
    assert "This dashboard is closed to you now" in html_of(board) and "lee is no longer on the list" in html_of(board)
    board.open_record("cy")
    board.refresh()
    assert "PRIVATE" not in html_of(board) and "Cy" not in html_of(board)
