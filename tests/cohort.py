"""A seeded cohort for the dashboard and feed tests: a plan per learner, the store filled from it,
and the figures expected from the plan alone (never from the code under test).

The course is the mini course plus an end-of-series self-assessment and a
second goal in session 2, so the feed has start and end scores to compare.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import make_course

COHORTS = ["Winter 2021", "Winter 2022", "Spring 2022", "=cmd|' /C calc'!A0"]
HOSTILE_NAMES = ["=SUM(A1:A9)", "+1 555 0100", "-2 chairs", "@admin", "\tTabbed", "<img src=x onerror=alert(1)>"]
S1_REQUIRED = ["s1-end", "s1-levels", "s1-why", "s1-private"]
STALLED_DAYS = 14
EXTRA_CELLS = [
    'SelfAssessment("s2-end-cultural-proficiency", competency="cultural-proficiency", stage="end", required=False)',
    'Goal("s2-goal-cultural-proficiency", competency="cultural-proficiency", prompt="One more goal.", required=False)',
]


def make_evaluation_course(folder: Path) -> Path:
    """The mini course with an end self-assessment and a second goal in session 2."""
    root = make_course(folder)
    path = root / "sessions" / "02-short.ipynb"
    notebook = json.loads(path.read_text())
    cells = [
        {"cell_type": "code", "execution_count": None, "id": f"extra{n}", "metadata": {}, "outputs": [], "source": source}
        for n, source in enumerate(EXTRA_CELLS)
    ]
    notebook["cells"][-1:-1] = cells  # before SessionComplete
    path.write_text(json.dumps(notebook))
    return root


@dataclass
class Plan:
    username: str
    name: str
    cohort: str
    on_roster: bool
    states: dict = field(default_factory=dict)  # session id -> "complete" | "in progress" | "not started"
    completed_at: dict = field(default_factory=dict)  # session id -> datetime
    start_score: float | None = None
    end_score: float | None = None
    goals: dict = field(default_factory=dict)  # competency -> (done, status, target)
    times: list = field(default_factory=list)  # every event's time
    saves: list = field(default_factory=list)  # bulk_save items

    @property
    def known(self) -> bool:
        """On the roster or has done something: the store knows them (others are nobody to it)."""
        return self.on_roster or bool(self.saves)

    @property
    def last_active(self):
        return max(self.times) if self.times else None


def plan_cohort(count: int, now: datetime, seed: int = 20210301) -> list[Plan]:
    """``count`` planned learners; the ones the store will know (see :attr:`Plan.known`) are returned."""
    rng = random.Random(seed)
    plans = []
    for n in range(count):
        on_roster = rng.random() > 0.05
        name = HOSTILE_NAMES[n % len(HOSTILE_NAMES)] if n % 97 == 0 else f"Supervisor {n:04d}"
        plan = Plan(f"sup{n:04d}", name if on_roster else "", rng.choice(COHORTS) if on_roster else "", on_roster)
        clock = now - timedelta(days=rng.uniform(0.1, 60))  # a learner's saves take under 2 hours: all before now

        def add(session, activity, verb, value, done=None, shared=None, event_only=False):
            nonlocal clock
            clock += timedelta(seconds=rng.randint(1, 300))
            plan.times.append(clock)
            item = dict(username=plan.username, session_id=session, activity_id=activity, verb=verb, value=value, at=clock, event_only=event_only)
            if done is not None:
                item["done"] = done
            if shared is not None:
                item["shared"] = shared
            plan.saves.append(item)
            return clock

        # Session 1
        roll = rng.random()
        s1 = "complete" if roll < 0.7 else "in progress" if roll < 0.85 else "not started"
        if s1 == "not started":
            extra = rng.random()
            if extra < 0.3:
                add("s1", "s1", "experienced", None, event_only=True)  # opened the page, did nothing
            elif extra < 0.45:
                add("s1", "s1-why", "responded", {"text": ""}, done=False)  # saved, nothing done
            elif extra < 0.55:
                add("s1", "s1-start-cultural-proficiency", "answered", {"competency": "cultural-proficiency", "stage": "start", "ratings": [2, None, None, None]}, done=False)
        else:
            add("s1", "s1", "experienced", None, event_only=True)
            done = S1_REQUIRED if s1 == "complete" else rng.sample(S1_REQUIRED, rng.randint(1, 4))
            for activity in S1_REQUIRED:
                if activity in done:
                    add("s1", activity, *_done_value(activity, rng))
                elif rng.random() < 0.3:
                    add("s1", activity, "responded" if activity in ("s1-why", "s1-private") else "answered", {"text": "  "}, done=False)
            if s1 == "complete":
                plan.completed_at["s1"] = add("s1", "s1-complete", "completed", {"useful": "Useful", "improve": ""}, done=True)
            if rng.random() < 0.6:
                final = [rng.randint(1, 4) for _ in range(4)]
                add("s1", "s1-start-cultural-proficiency", "answered", {"competency": "cultural-proficiency", "stage": "start", "ratings": final[:2] + [None, None]}, done=False)
                add("s1", "s1-start-cultural-proficiency", "answered", {"competency": "cultural-proficiency", "stage": "start", "ratings": final, "score": round(sum(final) / 4, 2)}, done=True)
                plan.start_score = round(sum(final) / 4, 2)
            if rng.random() < 0.5:
                plan.goals["transformational-value"] = _goal(add, rng, "s1", "s1-goal", "transformational-value")
        plan.states["s1"] = s1

        # Session 2: mostly done by those who finished session 1
        roll = rng.random()
        if s1 == "complete":
            s2 = "complete" if roll < 0.75 else "in progress" if roll < 0.9 else "not started"
        else:
            s2 = "complete" if roll < 0.05 else "in progress" if roll < 0.15 else "not started"
        if s2 != "not started":
            add("s2", "s2", "experienced", None, event_only=True)
            add("s2", "s2-note", "responded", {"text": f"Noticed {rng.random():.3f}"}, done=True, shared=rng.random() < 0.3)
            if s2 == "complete":
                plan.completed_at["s2"] = add("s2", "s2-complete", "completed", {"useful": "Very useful", "improve": ""}, done=True)
            if rng.random() < 0.7:
                final = [rng.randint(1, 4) for _ in range(4)]
                add("s2", "s2-end-cultural-proficiency", "answered", {"competency": "cultural-proficiency", "stage": "end", "ratings": final, "score": round(sum(final) / 4, 2)}, done=True)
                plan.end_score = round(sum(final) / 4, 2)
            if rng.random() < 0.5:
                plan.goals["cultural-proficiency"] = _goal(add, rng, "s2", "s2-goal-cultural-proficiency", "cultural-proficiency")
        elif rng.random() < 0.2:
            add("s2", "s2", "experienced", None, event_only=True)
        plan.states["s2"] = s2
        plans.append(plan)
    return [plan for plan in plans if plan.known]


def _done_value(activity: str, rng: random.Random) -> tuple:
    if activity == "s1-end":
        return ("answered", {"selected": ["A balanced budget"], "correct": rng.random() < 0.8}, True)
    if activity == "s1-levels":
        score = rng.randint(0, 3)
        return ("answered", {"placements": ["Internalized"] * 3, "score": score, "total": 3}, True)
    return ("responded", {"text": "A reflection <b>in bold</b> =1+1"}, True, rng.random() < 0.4)


def _goal(add, rng, session, activity, competency):
    done = rng.random() < 0.7
    status = rng.choice(["Not started", "In progress", "Met", "Revised"])
    target = "2025-06-30" if done else None
    value = {"competency": competency, "goal": "=Hire with the equity tool" if rng.random() < 0.1 else "Coach weekly",
             "measure": "Monthly check-ins" if done else "", "target": target, "status": status, "progress": "-on track"}
    add(session, activity, "responded", value, done=done)
    return (done, status, target, value["goal"])


def seed(store, plans: list[Plan]) -> int:
    store.upsert_learners(
        [{"username": p.username, "name": p.name, "email": f"{p.username}@psesd.example.org", "cohort": p.cohort, "department": "Teaching and Learning", "extra": {}}
         for p in plans if p.on_roster]
    )
    return store.bulk_save([item for plan in plans for item in plan.saves])


# What the plan says the figures must be -------------------------------------------


def expected_sessions(plans: list[Plan]) -> dict[str, tuple[int, int]]:
    return {s: (sum(p.states[s] == "complete" for p in plans), sum(p.states[s] == "in progress" for p in plans)) for s in ("s1", "s2")}


def series_complete(plan: Plan) -> bool:
    return plan.states["s1"] == "complete" and plan.states["s2"] == "complete"


def not_started(plans: list[Plan]) -> set[str]:
    return {p.username for p in plans if p.states["s1"] == "not started" and p.states["s2"] == "not started"}


def stalled(plans: list[Plan], now: datetime) -> set[str]:
    cutoff = now - timedelta(days=STALLED_DAYS)
    return {
        p.username
        for p in plans
        if p.username not in not_started([p]) and not series_complete(p) and (p.last_active is None or p.last_active < cutoff)
    }


def utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)
