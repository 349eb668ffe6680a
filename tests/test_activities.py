"""The activity widgets' own rules, run in-process (the browser tests drive the same widgets through Voila)."""

from __future__ import annotations

from companion.activities import Choice, Scenario, Workbook
from companion.activities.page import shuffled
from companion.catalog import load_catalog


def open_page(learner: str, monkeypatch, activity_id: str = "s1-case-meeting", **changes):
    """The fixture course's session 1 as ``learner`` opens it, and one of its activities (arguments changed by ``changes``)."""
    monkeypatch.setenv("COMPANION_LEARNER", learner)
    workbook = Workbook("s1")
    declared = load_catalog().activity(activity_id)
    kind = {"Scenario": Scenario, "Choice": Choice}[declared.kind]
    return workbook, kind(activity_id, **{**declared.args, **changes})


def test_a_scenario_saves_its_path_by_the_choices_text_and_a_new_page_shows_it_again(course, monkeypatch):
    workbook, case = open_page("ana", monkeypatch)
    assert case.next_step == "first" and case.closing.layout.display == "none"
    case.choose("Let the meeting run and talk to her afterwards")
    assert case.next_step == "after"
    assert "The idea is lost for today." in case.story.value and "Waiting keeps the peace" in case.story.value
    case.choose("What would help you be heard in our meetings?")
    assert case.next_step is None and case.current.layout.display == "none" and case.closing.layout.display is None
    saved = workbook.store.response("ana", "s1-case-meeting")
    assert [step["choice"] for step in saved.value["path"]] == [
        "Let the meeting run and talk to her afterwards",
        "What would help you be heard in our meetings?",
    ]
    assert not saved.done, "not done until the learner writes what they would do"
    case.reflection.value = "Ask her first."
    case.save_now()
    assert workbook.store.response("ana", "s1-case-meeting").done

    _, again = open_page("ana", monkeypatch)
    assert again.path == case.path and again.reflection.value == "Ask her first."
    assert again.story.value.count("You chose:") == 2


def test_a_decision_that_is_not_among_the_steps_choices_records_nothing(course, monkeypatch):
    workbook, case = open_page("ana", monkeypatch)
    case.choose("Fire everyone")
    case.choose(None)
    assert case.path == [] and workbook.store.response("ana", "s1-case-meeting") is None
    assert "Choose what you would do first" in case.hint.value


def test_a_changed_notebook_keeps_the_saved_path_as_far_as_it_still_leads(course, monkeypatch):
    _, case = open_page("ana", monkeypatch)
    case.choose("Let the meeting run and talk to her afterwards")
    case.choose("Were you upset yesterday?")
    steps = load_catalog().activity("s1-case-meeting").args["steps"]
    steps[1]["choices"][1]["choice"] = "How did yesterday's meeting feel to you?"
    _, changed = open_page("ana", monkeypatch, steps=steps)
    assert changed.path == [{"step": "first", "choice": "Let the meeting run and talk to her afterwards"}]
    assert changed.next_step == "after" and changed.current.layout.display is None


def test_starting_a_case_again_keeps_the_reflection_and_the_credit(course, monkeypatch):
    workbook, case = open_page("ana", monkeypatch)
    case.choose("End the meeting early to avoid tension")
    case.reflection.value = "Name it next time."
    case.save_now()
    case.start_again()
    saved = workbook.store.response("ana", "s1-case-meeting")
    assert saved.value["path"] == [] and saved.value["reflection"] == "Name it next time." and saved.done
    assert case.next_step == "first" and case.closing.layout.display is None, "what they wrote stays in view"


def test_each_learner_sees_a_keyed_questions_options_in_their_own_stable_order():
    options = [f"option {n}" for n in range(6)]
    orders = {learner: shuffled(options, learner, "s1-end") for learner in ("ana", "bea", "cy", "dee")}
    assert all(sorted(order) == options for order in orders.values())
    assert len({tuple(order) for order in orders.values()}) > 1
    assert shuffled(options, "ana", "s1-end") == orders["ana"]
    assert shuffled(options, "ana", "s1-other") != orders["ana"] or shuffled(options, "ana", "s1-third") != orders["ana"]


def test_a_choice_is_graded_by_its_text_and_a_label_changed_in_the_browser_is_no_answer(course, monkeypatch):
    right = "Success for each child and eliminate the opportunity gap by leading with racial equity"
    workbook, question = open_page("bea", monkeypatch, activity_id="s1-end")
    assert list(question.picker.options) == shuffled(question.options, "bea", "s1-end") != question.options
    question.picker.value = right
    question.submit()
    assert workbook.store.response("bea", "s1-end").value == {"selected": [right], "correct": True}

    workbook, several = open_page("cy", monkeypatch, activity_id="s1-end", multiple=True, answer=[right])
    forged = several.boxes[0]
    forged.description, forged.value = "An answer the notebook never offered", True
    assert several.selected() == []
