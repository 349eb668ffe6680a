"""Supervisor Companion: the learning companion for the Antiracist Leadership training.

Modules, one concept each:

- ``settings``  course/course.toml read into one typed object, plus where data lives
- ``catalog``   the sessions' activities, found by reading the notebooks (no execution)
- ``store``     SQLAlchemy models; the only module that touches the database
- ``identity``  who the learner is: local login, a personal signed link, or JupyterHub
- ``roster``    reading and validating roster CSV files
- ``activities``the widgets a session notebook is made of
- ``progress``  completion rules over the store
- ``landing``   the learner's home page: six sessions and their progress
- ``dashboard`` the facilitator dashboard: figures, access, the Voila app, feedback
- ``exports``   the evaluation CSV (formula-safe) and a learner's journal
- ``xapi``      the xAPI 1.0.3 statement feed
- ``canvas``    Canvas links and the IMS Common Cartridge package
- ``release``   nbgrader: learner versions of the session notebooks
- ``server``    Voila configuration and launch
- ``cli``       the thin ``companion`` command
"""

from .errors import CourseError

__all__ = ["CourseError"]
__version__ = "0.1.0"
