"""Canvas: every link form, the Common Cartridge checked file by file against course.toml, and the framing settings."""

from __future__ import annotations

import doctest
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from companion import canvas, server
from companion.canvas import CC_NS, WEBLINK_NS, CanvasError
from companion.errors import CourseError, SettingsError
from companion.settings import load_settings
from conftest import REPO

BASE = "https://companion.example.org"
HUB = "https://hub.example.org/jupyter"
REPO_URL = "https://github.com/psesd/antiracist-leadership.git"
NS = {"cc": CC_NS, "wl": WEBLINK_NS, "lomimscc": canvas.LOM_MANIFEST_NS}


@pytest.fixture(scope="module")
def course_settings():
    """The real course: its six sessions, as course.toml has them."""
    return load_settings(REPO)


def test_the_examples_in_the_module_hold():
    result = doctest.testmod(canvas)
    assert result.attempted >= 5 and result.failed == 0


# Links ------------------------------------------------------------------------


def test_standalone_links_open_each_session_page_in_course_order(course_settings):
    links = canvas.session_links(course_settings, BASE + "/")
    assert [link.session.id for link in links] == ["s1", "s2", "s3", "s4", "s5", "s6"]
    assert {link.form for link in links} == {"page"}
    for link, session in zip(links, course_settings.sessions):
        assert link.url == f"{BASE}/session/{session.number}", "the friendly path: the session's number in course.toml"
        assert "learner=" not in link.url, "Canvas links are generic: no personal token"
    assert [link.url for link in links] == [f"{BASE}/session/{n}" for n in range(1, 7)]


def test_a_page_link_follows_the_session_number_not_the_file_name(course_settings):
    from dataclasses import replace

    renumbered = replace(course_settings.sessions[1], number=12, notebook="sessions/renamed.ipynb")
    assert canvas.page_url(BASE + "/", renumbered) == f"{BASE}/session/12"
    assert canvas.session_url(renumbered, "https://x.org/companion/") == "https://x.org/companion/session/12", "a base path is kept"


def test_hub_links_come_in_three_forms_for_every_session(course_settings):
    links = canvas.session_links(course_settings, HUB, hub=True, repo=REPO_URL, branch="release")
    assert [(link.session.id, link.form) for link in links] == [
        (s.id, form) for s in course_settings.sessions for form in ("hub", "nbgitpuller", "lti")
    ]
    for link in links:
        notebook = link.session.page  # e.g. 01-....ipynb, at the top of the published learners' copy (companion release --to)
        parts = urlsplit(link.url)
        assert (parts.scheme, parts.netloc) == ("https", "hub.example.org")
        if link.form == "hub":
            assert link.url == f"{HUB}/hub/user-redirect/voila/render/antiracist-leadership/{notebook}"
        elif link.form == "nbgitpuller":
            assert parts.path == "/jupyter/hub/user-redirect/git-pull"
            assert parse_qs(parts.query) == {
                "repo": [REPO_URL],
                "branch": ["release"],
                "targetpath": ["antiracist-leadership"],
                "urlpath": [f"voila/render/antiracist-leadership/{notebook}"],
            }
        else:
            assert parts.path == "/jupyter/hub/lti/launch"
            query = parse_qs(parts.query)
            assert list(query) == ["custom_next"], "Canvas launches keep custom_next; next would be lost"
            puller = next(l for l in links if l.session == link.session and l.form == "nbgitpuller")
            # Hub-relative (with the hub's base path), decoded once by the hub into the nbgitpuller link.
            assert query["custom_next"] == [puller.url.removeprefix("https://hub.example.org")]


def test_with_nbgitpullers_parent_folder_the_links_open_the_pages_where_the_pull_puts_them(course_settings):
    # NBGITPULLER_PARENTPATH=courses: the pull lands in ~/courses/<folder>, and nbgitpuller's targetpath stays the folder.
    links = canvas.session_links(course_settings, HUB, hub=True, repo=REPO_URL, branch="release", parent="courses/")
    hub, puller, lti = links[:3]
    assert hub.url == f"{HUB}/hub/user-redirect/voila/render/courses/antiracist-leadership/{hub.session.page}"
    query = parse_qs(urlsplit(puller.url).query)
    assert query["targetpath"] == ["antiracist-leadership"]
    assert query["urlpath"] == [f"voila/render/courses/antiracist-leadership/{hub.session.page}"]
    assert "courses%252Fantiracist-leadership" in lti.url
    with pytest.raises(CanvasError, match="not a folder nbgitpuller can pull into"):
        canvas.session_links(course_settings, HUB, hub=True, repo=REPO_URL, parent="../etc")


def test_a_hub_link_without_a_repository_says_to_pass_it(course_settings):
    with pytest.raises(CanvasError, match="pass --repo"):
        canvas.session_links(course_settings, HUB, hub=True)


@pytest.mark.parametrize("base_url", ["companion.example.org", "ftp://x.org", "https://", "https://x.org/?a=1", ""])
def test_a_base_url_that_is_not_a_web_address_is_refused(course_settings, base_url):
    with pytest.raises(CanvasError, match="is not a web address"):
        canvas.session_links(course_settings, base_url)


def test_a_repository_nbgitpuller_cannot_name_a_folder_for_is_refused(course_settings):
    with pytest.raises(CanvasError, match="not a repository address"):
        canvas.session_links(course_settings, HUB, hub=True, repo="https://github.com/psesd/course repo")


def test_links_print_as_csv_with_one_row_per_link(course_settings):
    text = canvas.links_csv(canvas.session_links(course_settings, BASE))
    lines = text.splitlines()
    assert lines[0] == "session,number,title,form,url"
    assert len(lines) == 1 + 6
    assert lines[2].startswith("s2,2,Building our cultural proficiency: Understanding racism") and lines[2].endswith(
        f",page,{BASE}/session/2"
    )


def test_plain_http_gets_a_note_that_canvas_cannot_frame_it():
    assert "new tab" in canvas.https_note("http://10.0.0.5:8866")
    assert canvas.https_note(BASE) is None


# The cartridge ----------------------------------------------------------------


def unpack(package: Path, into: Path) -> dict[str, Path]:
    with zipfile.ZipFile(package) as archive:
        assert archive.testzip() is None
        archive.extractall(into)
        return {name: into / name for name in archive.namelist()}


def parsed_cartridge(package: Path, into: Path) -> tuple[dict[str, Path], dict[str, ET.Element]]:
    """Every file of the package, and every XML file parsed (a parse error fails the test)."""
    files = unpack(package, into)
    xml = {name: ET.parse(path).getroot() for name, path in files.items() if name.endswith(".xml")}
    return files, xml


class Text(HTMLParser):
    """The visible text and the links of an HTML page."""

    def __init__(self):
        super().__init__()
        self.text, self.links = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs)["href"])

    def handle_data(self, data):
        self.text.append(data)


def check_cartridge(package: Path, into: Path, settings, expected_urls: list[str]) -> None:
    """The package is a Common Cartridge 1.1 that Canvas imports as one module per session, in order."""
    files, xml = parsed_cartridge(package, into)
    assert list(files)[0] == "imsmanifest.xml"
    manifest = xml["imsmanifest.xml"]
    assert manifest.tag == f"{{{CC_NS}}}manifest"
    assert manifest.findtext("cc:metadata/cc:schema", namespaces=NS) == "IMS Common Cartridge"
    assert manifest.findtext("cc:metadata/cc:schemaversion", namespaces=NS) == "1.1.0"
    location = manifest.get("{http://www.w3.org/2001/XMLSchema-instance}schemaLocation").split()
    assert location[:2] == [CC_NS, "http://www.imsglobal.org/profile/cc/ccv1p1/ccv1p1_imscp_v1p2_v1p0.xsd"]
    assert manifest.findtext("cc:metadata/lomimscc:lom/lomimscc:general/lomimscc:title/lomimscc:string", namespaces=NS) == settings.title

    organizations = manifest.findall("cc:organizations/cc:organization", NS)
    assert len(organizations) == 1 and organizations[0].get("structure") == "rooted-hierarchy"
    roots = organizations[0].findall("cc:item", NS)
    assert len(roots) == 1 and roots[0].get("identifierref") is None
    modules = roots[0].findall("cc:item", NS)  # Canvas makes each of these a module, in this order
    assert [m.findtext("cc:title", namespaces=NS) for m in modules] == [
        f"Session {s.number}: {s.title}" for s in settings.sessions
    ]

    resources = {r.get("identifier"): r for r in manifest.findall("cc:resources/cc:resource", NS)}
    identifiers = [e.get("identifier") for e in manifest.iter() if e.get("identifier")]
    assert len(identifiers) == len(set(identifiers)), "identifiers must be unique"
    for module, session, url in zip(modules, settings.sessions, expected_urls, strict=True):
        assert module.get("identifierref") is None, "a module is a folder item, not a resource"
        overview_item, link_item = module.findall("cc:item", NS)
        overview = resources[overview_item.get("identifierref")]
        link = resources[link_item.get("identifierref")]

        assert overview.get("type") == "webcontent"
        page_file = overview.find("cc:file", NS).get("href")
        assert overview.get("href") == page_file and page_file.endswith(".html") and page_file in files
        page = Text()
        page.feed(files[page_file].read_text(encoding="utf-8"))
        text = " ".join("".join(page.text).split())
        assert f"Session {session.number}: {session.title}" in text
        assert session.summary in text and session.prepare in text
        assert "stays private unless you choose to share it" in text
        assert page.links == [url]

        assert link.get("type") == "imswl_xmlv1p1"
        link_file = link.find("cc:file", NS).get("href")
        weblink = xml[link_file]
        assert weblink.tag == f"{{{WEBLINK_NS}}}webLink"
        assert weblink.find("wl:url", NS).get("href") == url
        assert weblink.findtext("wl:title", namespaces=NS) == link_item.findtext("cc:title", namespaces=NS)

    referenced = {f.get("href") for r in resources.values() for f in r.findall("cc:file", NS)}
    assert referenced == set(files) - {"imsmanifest.xml"}, "every file is a resource's, and every resource's file is there"


def test_the_package_is_six_modules_in_course_order_each_with_an_overview_and_the_session_link(course_settings, tmp_path):
    package = canvas.build_package(course_settings, BASE, tmp_path / "course.imscc")
    assert package == tmp_path / "course.imscc"
    expected = [f"{BASE}/session/{s.number}" for s in course_settings.sessions]
    check_cartridge(package, tmp_path / "unzipped", course_settings, expected)


def test_the_hub_package_links_pull_the_course_first(course_settings, tmp_path):
    package = canvas.build_package(course_settings, HUB, tmp_path / "hub.imscc", hub=True, repo=REPO_URL)
    expected = [canvas.session_url(s, HUB, "nbgitpuller", REPO_URL, "main") for s in course_settings.sessions]
    check_cartridge(package, tmp_path / "unzipped", course_settings, expected)


def test_the_same_course_makes_the_same_package(course_settings, tmp_path):
    first = canvas.build_package(course_settings, BASE, tmp_path / "a.imscc").read_bytes()
    assert canvas.build_package(course_settings, BASE, tmp_path / "b.imscc").read_bytes() == first


def test_hostile_titles_are_text_in_the_package_never_markup(course, tmp_path):
    toml = course.root / "course" / "course.toml"
    hostile = "<script>alert('x')</script> & \"quotes\" ]]> <!--"
    injected = 'Second </title><item identifier="evil"/> & co'
    text = toml.read_text(encoding="utf-8")
    text = text.replace('title = "Mini course for tests"', f"title = {json.dumps(hostile)}")
    text = text.replace('title = "A short second session"', "title = " + json.dumps(injected))
    text = text.replace('summary = "One reflection."', 'summary = "<b>bold</b> & <img src=x onerror=alert(1)>"')
    toml.write_text(text, encoding="utf-8")
    settings = load_settings(course.root)
    assert settings.title == hostile and settings.sessions[1].title == injected
    package = canvas.build_package(settings, BASE, tmp_path / "hostile.imscc")
    check_cartridge(package, tmp_path / "unzipped", settings, [f"{BASE}/session/{s.number}" for s in settings.sessions])
    overview = (tmp_path / "unzipped" / "session-2" / "overview.html").read_text(encoding="utf-8")
    assert "<img" not in overview and "<b>" not in overview and "&lt;img src=x onerror=alert(1)&gt;" in overview


def test_a_package_needs_an_imscc_name_in_an_existing_folder(course_settings, tmp_path):
    with pytest.raises(CanvasError, match="should end in .imscc"):
        canvas.build_package(course_settings, BASE, tmp_path / "course.zip")
    with pytest.raises(CanvasError, match="does not exist"):
        canvas.build_package(course_settings, BASE, tmp_path / "missing" / "course.imscc")
    with pytest.raises(CanvasError, match="is not a web address"):
        canvas.build_package(course_settings, "companion.example.org", tmp_path / "course.imscc")
    assert list(tmp_path.iterdir()) == [], "nothing is written when the package cannot be made"
    assert issubclass(CanvasError, CourseError), "the command reports it as one clear message"


# Framing settings (the header and cookies the browser test sees) -----------------


def test_the_policy_quotes_self_and_lists_the_canvas_hosts_unquoted(course):
    assert server.content_security_policy(course) == "frame-ancestors 'self' https://canvas.example.edu"


@pytest.mark.parametrize("entry", ["'https://canvas.example.edu'", "https://canvas.example.edu; script-src *", "https://canvas.example.edu/courses", "canvas one"])
def test_a_frame_ancestor_that_is_not_a_host_is_named(course, entry):
    toml = course.root / "course" / "course.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8").replace('frame_ancestors = ["https://canvas.example.edu"]', f"frame_ancestors = [{entry!r}]"),
        encoding="utf-8",
    )
    with pytest.raises(SettingsError, match="frame_ancestors has .* which is not a host"):
        server.content_security_policy(load_settings(course.root))


@pytest.mark.parametrize("https", [True, False])
def test_cookies_are_marked_for_a_third_party_frame_only_over_https(course, https):
    toml = course.root / "course" / "course.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("[server]\n", f"[server]\nhttps = {str(https).lower()}\n"), encoding="utf-8")
    config = server.voila_config(load_settings(course.root), port=8866)
    xsrf = config["Voila"]["tornado_settings"].get("xsrf_cookie_kwargs")
    login = config.get("IdentityProvider", {}).get("cookie_options")
    if https:
        assert xsrf == login == {"samesite": "None", "secure": True}
    else:
        assert xsrf is None and login is None


def test_https_must_be_true_or_false(course):
    toml = course.root / "course" / "course.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("[server]\n", '[server]\nhttps = "yes"\n'), encoding="utf-8")
    with pytest.raises(SettingsError, match="https is 'yes'; write true or false"):
        load_settings(course.root)


# The command (passes once `companion canvas` is wired into cli.py) ----------------


def test_canvas_links_prints_every_form(course, capsys):
    from companion.cli import main

    assert main(["canvas", "links", "--base-url", BASE]) == 0
    standalone = capsys.readouterr().out.splitlines()
    assert standalone == [
        "session,number,title,form,url",
        f"s1,1,A session with every kind of activity,page,{BASE}/session/1",
        f"s2,2,A short second session,page,{BASE}/session/2",
    ]

    assert main(["canvas", "links", "--base-url", HUB, "--hub", "--repo", REPO_URL, "--branch", "main"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split(",")[3] for row in rows] == ["hub", "nbgitpuller", "lti"] * 2
    s2 = [row.split(",", 4)[4] for row in rows if row.startswith("s2,")]
    assert s2[0] == f"{HUB}/hub/user-redirect/voila/render/antiracist-leadership/02-short.ipynb"
    assert s2[1].startswith(f"{HUB}/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgithub.com%2Fpsesd%2F")
    assert s2[2].startswith(f"{HUB}/hub/lti/launch?custom_next=%2Fjupyter%2Fhub%2Fuser-redirect%2Fgit-pull%3Frepo%3D")


def test_canvas_links_for_the_hub_without_a_repository_is_one_clear_error(course, capsys):
    from companion.cli import main

    assert main(["canvas", "links", "--base-url", HUB, "--hub"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pass --repo" in err and "Traceback" not in err


def test_canvas_package_writes_the_cartridge_and_says_what_to_do_with_it(course, tmp_path, capsys):
    from companion.cli import main

    out = tmp_path / "course.imscc"
    assert main(["canvas", "package", "--base-url", "http://10.0.0.5:8866", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert str(out) in captured.out and "2 modules" in captured.out
    assert "new tab" in captured.err, "plain http gets the note that Canvas cannot frame it"
    check_cartridge(out, tmp_path / "unzipped", course, [f"http://10.0.0.5:8866/session/{s.number}" for s in course.sessions])


def test_the_installed_command_prints_the_links(course):
    result = subprocess.run(
        [sys.executable, "-m", "companion.cli", "canvas", "links", "--base-url", BASE],
        capture_output=True, text=True, env=dict(os.environ), cwd=course.root,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^s2,2,A short second session,page,{re.escape(BASE)}/session/2$", result.stdout, re.M)
