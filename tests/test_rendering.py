"""Voila's page templates are compiled once per server (companion.rendering), and again only when edited."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from voila import notebook_renderer

from companion.rendering import SHARED, share_compiled_templates


def rendered(exporter_class, folder, name: str) -> tuple[str, object]:
    """The template rendered by a new exporter (a new Jinja environment, as Voila makes for each page), and the template."""
    template = exporter_class(template_paths=[str(folder)]).environment.get_template(name)
    with ThreadPoolExecutor(1) as apart:  # Voila's environments render asynchronously, on a loop of their own here
        text = apart.submit(asyncio.run, template.render_async(greeting="Welcome")).result()
    return text, template


def test_each_page_gets_its_own_template_compiled_only_once(tmp_path):
    exporter_class = share_compiled_templates()
    assert notebook_renderer.VoilaExporter is exporter_class, "Voila renders its pages with it"
    assert share_compiled_templates() is exporter_class
    (tmp_path / "page.html.j2").write_text("<p>{{ greeting }}</p>")
    compiled = SHARED.compiled
    first, first_template = rendered(exporter_class, tmp_path, "page.html.j2")
    second, second_template = rendered(exporter_class, tmp_path, "page.html.j2")
    assert first == second == "<p>Welcome</p>"
    assert SHARED.compiled == compiled + 1, "the second page reused the compiled template"
    assert first_template.environment is not second_template.environment, "each page keeps its own environment"


def test_an_edited_template_is_compiled_again(tmp_path):
    exporter_class = share_compiled_templates()
    page = tmp_path / "page.html.j2"
    page.write_text("<p>{{ greeting }}</p>")
    rendered(exporter_class, tmp_path, "page.html.j2")
    page.write_text("<h1>{{ greeting }}</h1>")
    compiled = SHARED.compiled
    assert rendered(exporter_class, tmp_path, "page.html.j2")[0] == "<h1>Welcome</h1>"
    assert SHARED.compiled == compiled + 1
