"""The sessions stay true to their sources (course/sources, the seeds): the facts a review corrected,
the series' own words named as the series' own, and each correction traced in the facilitator notes."""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from companion.settings import load_settings
from conftest import REPO

SESSIONS = load_settings(REPO).sessions
SOURCES = {path.name[:3]: path.read_text(encoding="utf-8") for path in sorted((REPO / "course" / "sources").glob("*.txt"))}
QUOTED = re.compile(r"[\"“]([^\"“”]{12,}?)[\"”]")
CHANGES = "**Changes of fact and their sources.**"


def plain(text: str) -> str:
    """Text compared as a reader compares it: straight quotes, single spaces, no emphasis, any case."""
    text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"').replace("*", "")
    return " ".join(text.split()).casefold()


def cells(session) -> list[dict]:
    return json.loads((REPO / session.notebook).read_text(encoding="utf-8"))["cells"]


def is_note(cell: dict) -> bool:
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("solution"))


def learner_paragraphs(session) -> list[str]:
    """What a learner reads: the markdown outside facilitator notes, and the texts in activity calls."""
    found = []
    for cell in cells(session):
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and not is_note(cell):
            found += [p for p in re.split(r"\n\s*\n", source) if p.strip()]
        elif cell["cell_type"] == "code":
            found += [bytes(s, "utf-8").decode("unicode_escape") if "\\" in s else s for s in re.findall(r'"((?:[^"\\]|\\.)*)"', source)]
    return found


def notes(session) -> str:
    return "\n".join("".join(c["source"]) for c in cells(session) if is_note(c))


def series_words() -> list[str]:
    """The series' own summaries of the four competencies and its self-rating statements (course.toml)."""
    course = tomllib.loads((REPO / "course" / "course.toml").read_text(encoding="utf-8"))
    words = []
    for competency in course["competencies"]:
        words += [competency["description"], *competency["indicators"]]
    return [plain(w) for w in words]


def test_the_sources_are_the_five_seeds():
    assert sorted(SOURCES) == ["000", "001", "002", "003", "004"]


@pytest.mark.parametrize("session", SESSIONS, ids=[s.id for s in SESSIONS])
def test_quoting_the_series_own_summaries_names_them_as_the_series_own(session):
    ours, seeds = series_words(), [plain(text) for text in SOURCES.values()]
    unnamed = []
    for paragraph in learner_paragraphs(session):
        for quote in QUOTED.findall(paragraph):
            words = plain(quote).strip(" .,;:")
            if len(words.split()) < 4 or any(words in seed for seed in seeds):
                continue
            if any(words in text for text in ours) and "series" not in plain(paragraph):
                unnamed.append(f"{quote!r} in: {paragraph[:160]}")
    assert unnamed == [], "quoted as if the agency said it, but it is this series' own summary:\n" + "\n".join(unnamed)


def text_of(number: int) -> str:
    return plain("\n".join(learner_paragraphs(SESSIONS[number - 1])))


def test_session_2_dates_the_exclusion_order_march_24_and_the_removal_march_30():
    text = text_of(2)
    for sentence in re.split(r"(?<=[.!?])\s", text):
        if "exclusion order" in sentence and "march 30" in sentence:
            assert "march 24" in sentence, f"the order is dated March 24, 1942; March 30 was the removal: {sentence}"
    if "exclusion order" in text:
        assert "march 24, 1942" in text


def test_session_2_frames_racism_as_the_seeds_clre_institute_does_and_owns_its_four_levels():
    text = text_of(2)
    assert "interpersonal, institutional and systemic racism" in text, "seed 004's CLRE framing, quoted"
    assert "the one named in this series' cultural proficiency competency" not in text


def test_session_5_brings_in_the_principles_that_guide_our_culture_and_ties_them_to_the_goals():
    text = text_of(5)
    assert "the principles that guide our culture" in text
    goals = [p for p in learner_paragraphs(SESSIONS[4]) if "principles" in plain(p) and "goal" in plain(p)]
    assert goals, "the Principles are connected to the goals the learner sets"


def test_session_4_quotes_policy_1010_as_policy_1010_not_as_the_advocate_competency():
    for paragraph in learner_paragraphs(SESSIONS[3]):
        text = plain(paragraph)
        if "with educational partners" in text and "racial equity advocate" in text:
            assert "policy 1010" in text and "series" in text, paragraph


@pytest.mark.parametrize("session", SESSIONS, ids=[s.id for s in SESSIONS])
def test_each_sessions_facilitator_notes_trace_its_changes_of_fact_to_a_seed(session):
    text = notes(session)
    assert CHANGES in text, f"{session.notebook}: the facilitator notes list changes of fact under {CHANGES}"
    section = text.split(CHANGES, 1)[1].lstrip("\n").split("\n\n", 1)[0]
    bullets = [line for line in section.splitlines() if line.lstrip().startswith("- ")]
    assert bullets, f"{session.notebook}: at least one bullet under {CHANGES}"
    for bullet in bullets:
        cited = re.findall(r"seed (\d{3})", bullet, re.IGNORECASE)
        assert cited and all(number in SOURCES for number in cited), f"cites a seed in course/sources: {bullet}"
        quotes = re.findall(r"[“\"]([^“”\"]{12,})[”\"]", bullet)
        if quotes:  # a bullet may quote what the page said before; what it quotes from its seed must be there
            assert any(plain(q).rstrip(".,;:") in plain(SOURCES[n]) for q in quotes for n in cited), f"none of its quotations is in seed {cited}: {bullet}"
