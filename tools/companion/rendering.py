"""Voila's page templates compiled once per server, not once per page, and each markdown cell rendered once.

Voila renders each page with a new exporter, and each exporter makes a new
Jinja environment, which lexes, parses and compiles every template of the page
(``index.html.j2`` and the dozen it extends and includes) again: on the
2-core machine about a quarter of the server's CPU per page opened. Jinja's
own answer is a bytecode cache shared between environments. Its entries are
keyed by template and checked against the template's source, so an edited
template is compiled afresh, and each page still gets its own template
objects, filters and globals.

Each page also renders every markdown cell of its notebook again, with a new
Markdown parser per cell (about a tenth of the server's CPU per page on a
session). The HTML of a markdown text is kept (:class:`RenderedMarkdown`),
keyed by the text, its cell's attachments and the exporter's settings; a text
with an image is rendered each time, as Voila reads the image's file then.

Voila has no setting for the exporter's environment, so :func:`share_compiled_templates`
points the name Voila renders with (``voila.notebook_renderer.VoilaExporter``)
at a subclass that adds both; ``companion serve`` calls it once at start.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict

from jinja2 import BytecodeCache, pass_context
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


class RenderedMarkdown:
    """Markdown texts' HTML, the most recently used ``limit`` of them, shared by every page of the process.

    Texts longer than ``longest`` characters (a learner's own words shown as
    markdown, say) are not kept: rendering them once is all they need."""

    def __init__(self, limit: int = 2048, longest: int = 20_000) -> None:
        self.limit, self.longest = limit, longest
        self.html: OrderedDict[tuple, str] = OrderedDict()
        self.rendered = 0  # how many texts were rendered (not found, or not kept)
        self._lock = threading.Lock()

    def get(self, key: tuple, render) -> str:
        """The HTML kept for ``key`` (its first item the markdown text), else ``render()``'s, kept."""
        with self._lock:
            found = self.html.get(key)
            if found is not None:
                self.html.move_to_end(key)
                return found
            self.rendered += 1
        html = render()
        if len(key[0]) <= self.longest:
            with self._lock:
                self.html[key] = html
                if len(self.html) > self.limit:
                    self.html.popitem(last=False)
        return html


SHARED = CompiledTemplates()
MARKDOWN = RenderedMarkdown()


def share_compiled_templates():
    """Make Voila render every page with templates compiled once for the server, and markdown rendered once
    (:data:`MARKDOWN`); returns the exporter class used.

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

        @pass_context
        def markdown2html(self, context, source):
            if "![" in source:  # an image: Voila inlines its file as it renders
                return super().markdown2html(context, source)
            attachments = json.dumps(context["cell"].get("attachments") or {}, sort_keys=True)
            key = (source, attachments, self.markdown_renderer_class, self.anchor_link_text)
            return MARKDOWN.get(key, lambda: super(SharedTemplatesExporter, self).markdown2html(context, source))

    notebook_renderer.VoilaExporter = SharedTemplatesExporter
    return SharedTemplatesExporter
