"""The learner's "My growth and goals" page and the home page's mark for new feedback, in-process on the real course.

The real course has what learners meet: start self-ratings in session 1, end
self-ratings in session 6 and four goals in session 5. Each test has its own
empty data home; the page is the same widget Voila renders at ``/growth``
(tests/test_browser_growth.py drives it there).
"""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from html import unescape

import pytest

from companion.catalog import load_catalog
from companion.growth import Growth, GoalCheckIns, new_feedback_summary
from companion.landing import Home
from companion.settings import load_settings
from companion.store import open_store, utcnow
from conftest import REPO

CP = "cultural-proficiency"
START, END = "s1-start-cultural-proficiency", "s6-end-cultural-proficiency"
GOAL, OTHER_GOAL = "s5-goal-cultural-proficiency", "s5-goal-racial-equity-mindset"


@pytest.fixture
def real(tmp_path, monkeypatch):
    """The real course as the current course, with an empty data home; the learner is dee (this computer)."""
    for name in ("COMPANION_DB_URL", "COMPANION_SECRET", "JUPYTERHUB_USER", "COMPANION_IDENTITY", "QUERY_STRING", "VOILA_KERNEL_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COMPANION_COURSE_DIR", str(REPO))
    monkeypatch.setenv("COMPANION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COMPANION_LEARNER", "dee")
    settings = load_settings()
    return settings, open_store(settings.db_url), load_catalog(settings)


def html_of(widget) -> str:
    """The page's HTML parts, in order."""
    parts = []

    def walk(w):
        if type(w).__name__ == "HTML":
            parts.append(w.value)
        for child in getattr(w, "children", ()):
            walk(child)

    walk(widget)
    return "".join(parts)


def text_of(widget) -> str:
    """What the page's HTML says, tags removed, spaces collapsed, as a person reads it."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html_of(widget))).split())


def rate(store, stage_id: str, ratings: list, session: str, competency: str = CP):
    value = {"competency": competency, "stage": "start" if "start" in stage_id else "end", "ratings": ratings}
    if all(ratings):
        value["score"] = round(sum(ratings) / len(ratings), 2)
    store.save("dee", session, stage_id, "answered", value, done=all(ratings))


def set_goal(store, goal_id=GOAL, text="Ask families first", measure="Three calls logged", target="2027-03-01"):
    store.save("dee", "s5", goal_id, "responded",
               {"competency": CP, "goal": text, "measure": measure, "target": target, "status": "Not started", "progress": ""}, done=True)


def test_start_and_end_ratings_side_by_side_in_the_chart_and_the_table(real):
    settings, store, _ = real
    rate(store, START, [1, 2, 2, 3], "s1")
    rate(store, END, [2, 2, 4, None], "s6")
    rate(store, "s1-start-racial-equity-mindset", [2, 2, 3, 2], "s1", "racial-equity-mindset")
    rate(store, "s6-end-racial-equity-mindset", [3, 3, 3, 3], "s6", "racial-equity-mindset")
    page = Growth()
    html = html_of(page)

    label = unescape(re.search(r'<svg[^>]*role="img"[^>]*aria-label="([^"]+)"', html).group(1))
    assert "Cultural Proficiency: start 2, end 3 of 4 statements rated" in label, "no average until every statement is rated"
    assert "Racial Equity Mindset: start 2.25, end 3" in label
    assert "Racial Equity Advocate: start not rated yet, end not rated yet" in label
    chart = re.search(r"<svg.*?</svg>", html).group(0)
    assert re.search(r'<rect class="companion-bar-start" [^>]*width="34.00%"', chart), "a start of 2 reaches the 2 on the scale"
    assert re.search(r'<rect class="companion-bar-end" [^>]*width="51.00%"', chart), "an end of 3 reaches the 3"
    assert ">3 of 4 statements rated</text>" in chart and chart.count("<rect ") == 3

    table = re.search(r"<table class=\"companion-ratings\"><caption>Cultural Proficiency.*?</table>", html).group(0)
    rows = [unescape(re.sub(r"<[^>]+>", "|", row)).strip("|").split("||") for row in re.findall(r"<tr[^>]*>.*?</tr>", table)]
    statements = settings.competency(CP).indicators
    assert rows[1:5] == [
        [statements[0], "1", "2", "+1"],
        [statements[1], "2", "2", "no change"],
        [statements[2], "2", "4", "+2"],
        [statements[3], "3", "not rated yet", "no comparison yet"],
    ]
    assert rows[5] == ["Average", "2", "3 of 4 statements rated", "no comparison yet"]
    mindset = re.search(r"<caption>Racial Equity Mindset.*?</table>", html).group(0)
    assert "<th scope=\"row\">Average</th><td data-label=\"Start\">2.25</td><td data-label=\"End\">3</td><td data-label=\"Change\">+0.75</td>" in mindset
    assert "Transformational Value : not rated yet, at the start or the end." in text_of(page)
    text = text_of(page)
    assert "Some statements are not rated yet at the end: rate them in Session 6" in text
    assert 'href="/session/6"' in html


def test_a_goal_shows_its_measure_target_feedback_and_history_and_takes_a_check_in(real):
    _, store, _ = real
    set_goal(store, text="Ask <b>families</b> first")
    earlier = store.add_check_in("dee", "s5", GOAL, "In progress", "Called one family.", at=utcnow() - timedelta(days=10))
    store.add_feedback("dee", GOAL, "Lee", "A clear measure.", goal=True)
    store.add_feedback("dee", GOAL, "Lee", "Good first call.", check_in=earlier.id)

    page = Growth()
    text, html = text_of(page), html_of(page)
    assert "Ask <b>families</b> first" in text and "&lt;b&gt;families" in html, "learner text is shown as text"
    assert "Three calls logged" in text and "01 Mar 2027" in text and "Status now In progress" in text
    assert "Feedback on this goal" in text and "A clear measure." in text
    assert "Called one family." in text and "Feedback on this check-in" in text and "Good first call." in text
    assert text.count("Goals are not private like your reflections") == 1
    # The goals not written yet say where to write them.
    assert "Your Racial Equity Mindset goal" in text and html.count('href="/session/5"') == 3

    goal = next(g for g in page.goals if g.activity.id == GOAL)
    assert isinstance(goal, GoalCheckIns) and goal.status.value == "In progress"
    goal.status.value = "Met"
    goal.note.value = "All three calls made."
    goal.add()
    saved = store.check_ins("dee", GOAL)
    assert [(c.status, c.note) for c in saved] == [("In progress", "Called one family."), ("Met", "All three calls made.")]
    assert goal.note.value == "" and "Check-in saved: Met" in goal.message.value
    history = unescape(re.sub(r"<[^>]+>", " ", goal.history.value))
    assert history.index("Called one family.") < history.index("All three calls made."), "the history reads oldest first"
    assert len(re.findall(r"<time ", goal.history.value)) == 3, "two check-ins, each dated, and the dated feedback on the first"
    assert "Status now Met" in " ".join(unescape(re.sub(r"<[^>]+>", " ", goal.about.value)).split())


def test_a_refused_check_in_says_why_and_keeps_the_note(real):
    _, store, _ = real
    set_goal(store)
    goal = Growth().goals[0]
    goal.note.value = "x" * 5_001
    goal.add()
    assert "the limit is 5,000" in goal.message.value and "Your note is still in the box." in goal.message.value
    assert 'role="alert"' in goal.message.value
    assert goal.note.value == "x" * 5_001 and store.check_ins("dee", GOAL) == []


def test_feedback_is_listed_newest_first_with_what_it_answers_and_new_only_until_seen(real):
    _, store, catalog = real
    reflection = next(a for a in catalog.all_activities() if a.kind == "Reflection")
    store.save("dee", reflection.session_id, reflection.id, "shared", {"text": "My why."}, done=True, shared=True)
    set_goal(store)
    check_in = store.add_check_in("dee", "s5", GOAL, "In progress", "Started.", at=utcnow() - timedelta(days=3))
    store.add_feedback("dee", reflection.id, "Lee", "First: on the reflection.")
    store.add_feedback("dee", GOAL, "Lee", "Second: on the check-in.", check_in=check_in.id)
    store.add_feedback("dee", GOAL, "Lee", "Third: on the goal.", goal=True)

    assert new_feedback_summary(store, catalog, "dee") == "New feedback on 1 reflection and 1 goal"
    assert "New feedback on 1 reflection and 1 goal" in Home().children[0].value
    assert store.unseen_feedback("dee"), "the home page does not mark anything seen"

    page = Growth()
    section = next(w.value for w in page.children if 'id="companion-feedback"' in getattr(w, "value", ""))
    items = re.findall(r"<li class=\"companion-feedback-item\">(.*?)</li>", section)
    texts = [" ".join(unescape(re.sub(r"<[^>]+>", " ", item)).split()) for item in items]
    assert "Third: on the goal." in texts[0] and "Second: on the check-in." in texts[1] and "First: on the reflection." in texts[2]
    assert all("New" in t for t in texts), "everything is new on the first visit"
    assert f"On {reflection.title} , from Lee" in texts[2]
    assert "On your check-in of " in texts[1] and check_in.at.strftime("%d %b %Y") in texts[1]
    assert store.unseen_feedback("dee") == [], "opening the page marks the feedback seen"

    again = Growth()
    assert 'class="companion-new"' not in html_of(again)
    assert new_feedback_summary(store, catalog, "dee") is None
    assert "New feedback" not in Home().children[0].value

    store.add_feedback("dee", reflection.id, "Lee", "A fourth, later.")
    assert new_feedback_summary(store, catalog, "dee") == "New feedback on 1 reflection"


def test_the_home_page_counts_items_answered_not_messages(real):
    _, store, catalog = real
    reflections = [a for a in catalog.all_activities() if a.kind == "Reflection"][:2]
    for activity in reflections:
        store.save("dee", activity.session_id, activity.id, "shared", {"text": "Shared."}, done=True, shared=True)
        store.add_feedback("dee", activity.id, "Lee", "One.")
    store.add_feedback("dee", reflections[0].id, "Lee", "Two on the same reflection.")
    assert new_feedback_summary(store, catalog, "dee") == "New feedback on 2 reflections"
    home = Home().children[0].value
    assert re.search(r'<a href="/growth">New feedback on 2 reflections</a>', home)
    assert re.search(r'<a class="companion-growth-link" href="/growth">My growth and goals</a>', home)


def test_the_journal_downloads_with_the_learners_private_reflections(real):
    _, store, catalog = real
    reflection = next(a for a in catalog.all_activities() if a.kind == "Reflection")
    store.save("dee", reflection.session_id, reflection.id, "responded", {"text": "Private & mine <3"}, done=True)
    html = html_of(Growth())
    link = re.search(r'<a class="companion-journal-link" href="data:text/html;charset=utf-8;base64,([^"]+)" download="my-journal.html">Download my journal</a>', html)
    assert link, "a download link named my-journal.html"
    journal = base64.b64decode(link.group(1)).decode("utf-8")
    assert "Private &amp; mine &lt;3" in journal
    assert len(link.group(0)) < 20_000


def test_a_learner_with_nothing_yet_sees_what_to_do(real):
    page = Growth()
    label = unescape(re.search(r'role="img" aria-label="([^"]+)"', html_of(page)).group(1))
    assert label.count("start not rated yet, end not rated yet") == 4
    text = text_of(page)
    assert "Some statements are not rated yet at the start: rate them in Session 1" in text
    assert "No feedback yet." in text and "Nothing to download yet" in text
    assert text.count("Not written yet. Write it in Session 5") == 4


def test_an_invalid_link_shows_who_could_not_be_told_and_nothing_else(real, monkeypatch):
    _, store, _ = real
    set_goal(store)
    store.save("dee", "s5", GOAL, "responded", {"goal": "Dee's goal", "measure": "m", "target": None}, done=False)
    store.add_feedback("dee", GOAL, "Lee", "For Dee only.", goal=True)
    monkeypatch.setenv("COMPANION_IDENTITY", "link")
    monkeypatch.setenv("QUERY_STRING", "learner=dee.9999999999.forged")
    page = Growth()
    text = text_of(page)
    assert "We could not tell who you are" in text
    assert "Dee's goal" not in text and "For Dee only." not in text and "My goals" not in text
    assert len(store.unseen_feedback("dee")) == 1, "nothing marked seen"


def test_with_a_personal_link_every_link_keeps_the_token(real, monkeypatch):
    from companion.identity import server_secret, sign

    settings, store, _ = real
    set_goal(store)
    token = sign("dee", server_secret(settings.home))
    monkeypatch.setenv("COMPANION_IDENTITY", "link")
    monkeypatch.setenv("QUERY_STRING", f"learner={token}")
    hrefs = re.findall(r'href="([^"#][^"]*)"', html_of(Growth()))
    pages = [unescape(h) for h in hrefs if not h.startswith("data:")]
    assert f"/?learner={token}" in pages and f"/session/5?learner={token}" in pages
    assert all(h.endswith(f"?learner={token}") for h in pages), pages
    home = Home().children[0].value
    assert f'class="companion-growth-link" href="/growth?learner={token}"' in home



def test_a_double_click_on_add_check_in_saves_one_check_in(real):
    _, store, catalog = real
    store.save("dee", "s5", GOAL, "responded", {"goal": "Ask families first", "measure": "they say so"}, done=True)
    form = GoalCheckIns(store, catalog, "dee", catalog.activity(GOAL), store.response("dee", GOAL).value)
    form.note.value = "Met with two families."
    form.add()
    form.add()
    assert [c.note for c in store.check_ins("dee", GOAL)] == ["Met with two families."]


def test_every_page_says_the_same_exact_words_about_who_reads_a_private_reflection(real):
    from companion.activities import Workbook
    from companion.activities.page import PRIVACY_NOTE

    assert "only you read them" in PRIVACY_NOTE and "administrator" in PRIVACY_NOTE
    for page in (Home(), Growth(), Workbook("s1")):
        assert PRIVACY_NOTE in unescape(re.sub(r"<[^>]+>", "", html_of(page))), type(page).__name__
    assert "Nobody else sees them" not in (REPO / "sessions" / "01-foundation-what-is-your-why.ipynb").read_text()
