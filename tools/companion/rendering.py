"""Voila's page templates compiled once per server, not once per page.

Voila renders each page with a new exporter, and each exporter makes a new
Jinja environment, which lexes, parses and compiles every template of the page
(``index.html.j2`` and the dozen it extends and includes) again: on the
2-core machine about a quarter of the server's CPU per page opened. Jinja's
own answer is a bytecode cache shared between environments. Its entries are
keyed by template and checked against the template's source, so an edited
template is compiled afresh, and each page still gets its own template
objects, filters and globals.

Voila has no setting for the exporter's environment, so :func:`share_compiled_templates`
points the name Voila renders with (``voila.notebook_renderer.VoilaExporter``)
at a subclass that adds the cache; ``companion serve`` calls it once at start.
"""

from __future__ import annotations

from jinja2 import BytecodeCache
from jinja2.bccache import Bucket


class CompiledTemplates(BytecodeCache):
    """Compiled templates in memory, shared by every environment of the process."""

    def __init__(self) -> None:
        self.codes: dict[str, tuple[str, object]] = {}
        self.compiled = 0  # how many templates were compiled (not found, or changed)

    def load_bytecode(self, bucket: Bucket) -> None:
        found = self.codes.get(bucket.key)
        if found is not None and found[0] == bucket.checksum:
            bucket.code = found[1]

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.compiled += 1
        self.codes[bucket.key] = (bucket.checksum, bucket.code)

    def clear(self) -> None:
        self.codes.clear()


SHARED = CompiledTemplates()


def share_compiled_templates():
    """Make Voila render every page with templates compiled once for the server; returns the exporter class used.

    Calling it again changes nothing."""
    from voila import notebook_renderer
    from voila.exporter import VoilaExporter

    used = notebook_renderer.VoilaExporter
    if getattr(used, "compiled_templates", None) is SHARED:
        return used

    class SharedTemplatesExporter(VoilaExporter):
        compiled_templates = SHARED

        def _create_environment(self):
            environment = super()._create_environment()
            environment.bytecode_cache = self.compiled_templates
            return environment

    notebook_renderer.VoilaExporter = SharedTemplatesExporter
    return SharedTemplatesExporter
