"""Voila's page templates are compiled once per server (companion.rendering), and again only when edited;
markdown is rendered once per text, as Voila renders it."""

from __future__ import annotations

import base64

from conftest import run_in_own_loop
from voila import notebook_renderer
from voila.exporter import VoilaExporter

from companion.rendering import MARKDOWN, SHARED, share_compiled_templates


def rendered(exporter_class, folder, name: str) -> tuple[str, object]:
    """The template rendered by a new exporter (a new Jinja environment, as Voila makes for each page), and the template."""
    template = exporter_class(template_paths=[str(folder)]).environment.get_template(name)
    text = run_in_own_loop(lambda: template.render_async(greeting="Welcome"))  # Voila's environments render asynchronously
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


TEXT = "## Before you begin\n\nThink of **one** decision.\n\n- a list\n- $x^2$ math\n\n<details><summary>More</summary>Text</details>"


def test_a_markdown_text_is_rendered_once_for_every_page_and_as_voila_renders_it():
    ours, voilas = share_compiled_templates()(), VoilaExporter()
    cell = {"cell": {"cell_type": "markdown", "source": TEXT}}
    rendered = MARKDOWN.rendered
    first, second = ours.markdown2html(cell, TEXT), share_compiled_templates()().markdown2html(cell, TEXT)
    assert first == second == voilas.markdown2html(cell, TEXT)
    assert "<h2" in first and "<strong>one</strong>" in first and "<details>" in first
    assert MARKDOWN.rendered == rendered + 1, "the second page reused the first page's HTML"
    assert ours.markdown2html(cell, TEXT + " Edited.") != first and MARKDOWN.rendered == rendered + 2


def test_markdown_with_an_image_or_other_attachments_is_rendered_for_what_it_holds(tmp_path):
    from jupyter_server.services.contents.filemanager import FileContentsManager

    ours = share_compiled_templates()(contents_manager=FileContentsManager(root_dir=str(tmp_path)))
    picture = "![A chart](chart.png)"
    (tmp_path / "chart.png").write_bytes(b"first")
    assert base64.b64encode(b"first").decode() in ours.markdown2html({"cell": {}}, picture)
    (tmp_path / "chart.png").write_bytes(b"second")
    assert base64.b64encode(b"second").decode() in ours.markdown2html({"cell": {}}, picture), "the image's file is read each time"
    rendered = MARKDOWN.rendered
    attached = "See the note."
    one = ours.markdown2html({"cell": {"attachments": {"a.txt": {"text/plain": "1"}}}}, attached)
    two = ours.markdown2html({"cell": {"attachments": {"a.txt": {"text/plain": "2"}}}}, attached)
    assert one == two and MARKDOWN.rendered == rendered + 2, "different attachments, rendered apart"
