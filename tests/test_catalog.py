"""The catalog reads each session's activities from its notebook, and `companion check` reports every mistake with file and cell."""

from __future__ import annotations

import pytest

from companion.catalog import load_catalog
from companion.cli import main
from companion.settings import load_settings
from conftest import FILES, REPO, make_course


@pytest.fixture
def broken(tmp_path, monkeypatch):
    root = make_course(tmp_path / "broken", FILES / "broken_course")
    monkeypatch.setenv("COMPANION_COURSE_DIR", str(root))
    return root


def test_activities_are_read_from_the_notebook_without_running_it(course):
    catalog = load_catalog(course)
    activities = catalog.activities("s1")
    assert [a.kind for a in activities] == ["Choice", "Sort", "Reflection", "Reflection", "Scenario", "SelfAssessment", "Goal", "SessionComplete"]
    assert [a.id for a in catalog.required("s1")] == ["s1-end", "s1-levels", "s1-why", "s1-private"]
    why = catalog.activity("s1-why")
    assert (why.competency, why.cell, why.title) == ("racial-equity-mindset", 6, "Your why")
    assert catalog.problems() == []


def test_the_catalog_sees_a_notebook_change_without_a_restart(course):
    path = course.root / "sessions" / "02-short.ipynb"
    assert [a.id for a in load_catalog(course).required("s2")] == ["s2-note"]
    path.write_text(path.read_text().replace('Reflection(\\"s2-note\\"', 'Reflection(\\"s2-changed\\"'))
    assert [a.id for a in load_catalog(course).required("s2")] == ["s2-changed"]


@pytest.mark.parametrize(
    "expected",
    [
        "sessions/01-duplicate-and-malformed-ids.ipynb, cell 4: activity id 's1-why' is already used in sessions/01-duplicate-and-malformed-ids.ipynb, cell 3",
        "sessions/01-duplicate-and-malformed-ids.ipynb, cell 5: activity id 'S1 Why!' is malformed",
        "sessions/01-duplicate-and-malformed-ids.ipynb, cell 6: activity id 's2-elsewhere' is malformed",
        "sessions/01-duplicate-and-malformed-ids.ipynb, cell 7: Choice 's1-pick': answer 'c' is not one of its options",
        "sessions/02-unknown-competency.ipynb, cell 2: Reflection 's2-why' names unknown competency 'kindness'",
        "sessions/02-unknown-competency.ipynb, cell 3: Reflection 's2-computed': argument 'prompt' must be a literal",
        "sessions/02-unknown-competency.ipynb, cell 4: Sort 's2-sort': item 'x' names a category that is not in categories",
        "sessions/03-no-required-activity.ipynb: has no required activity",
        "sessions/03-no-required-activity.ipynb, cell 2: has a facilitator note (BEGIN SOLUTION) but is not marked",
        "sessions/03-no-required-activity.ipynb, cell 3: is a facilitator note that nbgrader cannot release",
        "sessions/04-missing.ipynb: the notebook does not exist",
        "sessions/05-wrong-workbook-syntax-error.ipynb, cell 2: Python syntax error on line 1",
        "sessions/05-wrong-workbook-syntax-error.ipynb: says Workbook(\"s1\") but course/course.toml gives it session 's5'",
        "sessions/05-wrong-workbook-syntax-error.ipynb: has no SessionComplete(\"s5-complete\") call",
        "sessions/06-titles.ipynb, cell 3: Reflection 's6-untitled' needs title=\"...\": a short name (at most 60 characters)",
        "sessions/06-titles.ipynb, cell 4: Choice 's6-long': title is 72 characters; shorten it to at most 60",
        "sessions/06-titles.ipynb, cell 6: Reflection 's6-second': title 'same name' is already used in cell 5",
        "sessions/06-titles.ipynb, cell 7: Reflection 's6-empty': title is empty",
    ],
)
def test_check_reports_each_mistake_with_file_and_cell(broken, capsys, expected):
    assert main(["check"]) == 1
    err = capsys.readouterr().err
    assert expected in err
    assert "28 problems found; fix them and run 'companion check' again." in err


def test_titles_come_from_the_notebook_uncut_and_self_ratings_goals_and_the_close_have_their_own(broken):
    catalog = load_catalog(load_settings())
    assert [a.title for a in catalog.activities("s6")] == [
        "A reflection whose notebook gives it no title",
        "A title so long that it would wrap in the to-do list and be hard to scan",
        "Same name",
        "same name",
        "A reflection with an empty title",
        "Self-rating: Cultural Proficiency (start)",
        "Goal: Racial Equity Mindset",
        "Finish the session",
    ]


def test_a_self_rating_without_a_title_is_named_by_the_competency_name_in_course_toml(broken):
    toml = broken / "course" / "course.toml"
    toml.write_text(toml.read_text().replace('name = "Cultural Proficiency"', 'name = "Cultural Proficiency (CP)"'))
    assert load_catalog(load_settings()).activity("s6-start-cultural-proficiency").title == "Self-rating: Cultural Proficiency (CP) (start)"


def test_every_real_activity_has_a_short_title_of_its_own():
    catalog = load_catalog(load_settings(REPO))
    for session in catalog.settings.sessions:
        titles = [a.args.get("title") for a in catalog.activities(session.id)]
        assert all(isinstance(t, str) and 0 < len(t) <= 60 for t in titles), titles
        assert len({t.casefold() for t in titles}) == len(titles), titles


def test_check_passes_a_sound_course(course, capsys):
    assert main(["check"]) == 0
    assert capsys.readouterr().out == "All 2 sessions are in order: 11 activities.\n"


EXERCISES = {"Choice", "Sort", "SelfAssessment", "Goal"}


@pytest.mark.parametrize("session", load_settings(REPO).sessions, ids=lambda s: s.id)
def test_every_real_session_has_two_required_reflections_two_kinds_of_exercise_and_a_close(session):
    catalog = load_catalog(load_settings(REPO))
    activities = catalog.activities(session.id)
    required = catalog.required(session.id)
    assert sum(a.kind == "Reflection" for a in required) >= 2
    assert len({a.kind for a in required} & EXERCISES) >= 2, "exercises of at least two different kinds"
    assert activities[-1].kind == "SessionComplete"


@pytest.fixture
def guessable(tmp_path, monkeypatch):
    root = make_course(tmp_path / "guessable", FILES / "guessable_course")
    monkeypatch.setenv("COMPANION_COURSE_DIR", str(root))
    return root


@pytest.mark.parametrize(
    "expected",
    [
        "sessions/01-answer-is-always-the-longest.ipynb, cell 4: Choice 's1-first': the keyed answer is the longest option (77 characters, the longest other 10), as in 2 of the course's 3 questions with an answer (at most a third may be)",
        "sessions/01-answer-is-always-the-longest.ipynb, cell 5: Choice 's1-second': the keyed answer is the longest option (39 characters, the longest other 10)",
        "sessions/02-sort-items-name-their-category.ipynb, cell 5: Sort 's2-sort': item 'An institutional rule screens out degrees from ot…' contains the category name 'Institutional'",
        "sessions/02-sort-items-name-their-category.ipynb, cell 5: Sort 's2-sort': item 'Perfectionism: a report comes back covered in cor…' starts with a label naming what it shows",
        "sessions/03-no-scenario-and-a-wrong-time.ipynb: has no Scenario: add one",
        "sessions/03-no-scenario-and-a-wrong-time.ipynb, cell 1: says 90 minutes, but reading it (",
        "sessions/04-scenario-that-loops.ipynb, cell 3: Scenario 's4-case': step 'first' leads back to itself (first -> second -> first); every path must end",
        "sessions/04-scenario-that-loops.ipynb, cell 3: Scenario 's4-case': step 'orphan' cannot be reached from the first step",
        "sessions/04-scenario-that-loops.ipynb, cell 4: Scenario 's4-broken': needs reflection=",
        "sessions/04-scenario-that-loops.ipynb, cell 4: Scenario 's4-broken': step 'first': each choice needs non-empty \"choice\", \"consequence\" and \"why\" texts",
        "sessions/04-scenario-that-loops.ipynb, cell 4: Scenario 's4-broken': step 'first': choice 'Go nowhere' goes to step 'nowhere', which does not exist",
        "sessions/04-scenario-that-loops.ipynb, cell 4: Scenario 's4-broken': step 'only' needs 2 to 4 choices",
        "sessions/05-says-no-time.ipynb: does not say how long it takes; state \"About 10 minutes\" in its opening",
    ],
)
def test_check_fails_on_guessable_answers_keyword_sorts_missing_or_broken_scenarios_and_wrong_times(guessable, capsys, expected):
    assert main(["check"]) == 1
    err = capsys.readouterr().err
    assert expected in err
    assert "13 problems found" in err


def test_answers_are_guessable_by_length_only_past_a_third_of_the_questions(guessable, capsys):
    notebook = guessable / "sessions" / "01-answer-is-always-the-longest.ipynb"
    notebook.write_text(notebook.read_text().replace('\\"Wrong\\", \\"Also wrong\\"]', '\\"Wrong, and written out at far greater length than the right answer is, to be quite sure\\", \\"Also wrong\\"]', 1))
    main(["check"])
    err = capsys.readouterr().err
    assert "'s1-first': the keyed answer is the longest" not in err
    assert "'s1-second'" not in err, "one question in three may have its answer longest"


def test_the_real_course_keeps_its_answers_unguessable_by_length_and_its_stated_times_true():
    catalog = load_catalog(load_settings(REPO))
    problems = [str(p) for p in catalog.problems()]
    assert [p for p in problems if "longest option" in p or "minutes" in p or "Scenario" in p or "Sort" in p] == []
    for session in catalog.settings.sessions:
        reading = catalog.readings[session.id]
        assert reading.stated is not None, f"{session.notebook} states its time"
        assert any(a.kind == "Scenario" and a.required for a in reading.activities), f"{session.notebook} has a required scenario"
