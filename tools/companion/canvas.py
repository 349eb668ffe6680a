"""Canvas: the links that open the session pages, and the Common Cartridge that brings them in.

The course reaches Canvas as six modules, one per session, in course order. Each
module holds an overview page (the session's purpose and what to prepare, from
course.toml) and a web link to the session page. Canvas shows the link inside
its own page (an iframe) or in a new tab; either way the learner lands on the
Voila page, which allows Canvas to frame it (``frame-ancestors`` in
:func:`companion.server.content_security_policy`).

A session page has one address per way the course is served (a *form*):

``page``
    a standalone companion server: ``<base>/session/<n>``, n the session's
    number in course.toml (:mod:`companion.paths`)
``hub``
    JupyterHub, with the course repository already in each learner's home:
    ``<base>/hub/user-redirect/voila/render/<folder>/<notebook>``
``nbgitpuller``
    JupyterHub that first pulls (or updates) the course repository into the
    learner's home, then opens the page:
    ``<base>/hub/user-redirect/git-pull?repo=..&branch=..&targetpath=<folder>&urlpath=voila/render/<folder>/<notebook>``
``lti``
    the nbgitpuller form, launched by Canvas through JupyterHub's LTI
    authenticator. Canvas posts the launch to ``<base>/hub/lti/launch`` with the
    launch URL's query; the authenticator sends the learner on to the
    hub-relative path in ``custom_next`` (its documented parameter for Canvas,
    rather than ``next``). This form goes in a Canvas *External Tool* item,
    never in a plain web link.

The JupyterHub forms open the session's page (its released file name) at the
top of the pulled folder: the layout ``companion release --to FOLDER`` publishes
(commit that folder to the branch nbgitpuller pulls). Never pull the sources:
they carry the facilitator notes. When the single-user servers set
``NBGITPULLER_PARENTPATH``, nbgitpuller pulls under that folder; pass it as
``parent`` (``--parent-path``) so the links open the pages where they land.

Canvas links carry no personal token, so they tell the page who the learner is
only under JupyterHub (the hub login, or the LTI launch). On a standalone
server in ``link`` mode the page asks for the learner's personal link (from
``companion links``); in ``local`` mode every visitor is the one configured
learner, which suits one person's own machine, never a shared server.

Example::

    >>> from companion.settings import Session
    >>> page_url("https://companion.example.org/", Session("s2", 2, "A short second session", "sessions/02-short.ipynb", "", ""))
    'https://companion.example.org/session/2'
    >>> nbgitpuller_url("https://hub.example.org", "https://github.com/psesd/leadership.git", "main", "sessions/02-short.ipynb")
    'https://hub.example.org/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgithub.com%2Fpsesd%2Fleadership.git&branch=main&targetpath=leadership&urlpath=voila%2Frender%2Fleadership%2Fsessions%2F02-short.ipynb'
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from .errors import CourseError
from .paths import session_path
from .settings import Session, Settings


class CanvasError(CourseError):
    """A Canvas link or package cannot be made from what was given; nothing was written."""


FORMS = ("page", "hub", "nbgitpuller", "lti")

# IMS Common Cartridge 1.1: namespaces, schema locations and resource types, as
# published by IMS and as Canvas's own exporter writes them.
CC_NS = "http://www.imsglobal.org/xsd/imsccv1p1/imscp_v1p1"
LOM_MANIFEST_NS = "http://ltsc.ieee.org/xsd/imsccv1p1/LOM/manifest"
LOM_RESOURCE_NS = "http://ltsc.ieee.org/xsd/imsccv1p1/LOM/resource"
WEBLINK_NS = "http://www.imsglobal.org/xsd/imsccv1p1/imswl_v1p1"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
MANIFEST_SCHEMA_LOCATION = " ".join(
    [
        CC_NS, "http://www.imsglobal.org/profile/cc/ccv1p1/ccv1p1_imscp_v1p2_v1p0.xsd",
        LOM_RESOURCE_NS, "http://www.imsglobal.org/profile/cc/ccv1p1/LOM/ccv1p1_lomresource_v1p0.xsd",
        LOM_MANIFEST_NS, "http://www.imsglobal.org/profile/cc/ccv1p1/LOM/ccv1p1_lommanifest_v1p0.xsd",
    ]
)
WEBLINK_SCHEMA_LOCATION = f"{WEBLINK_NS} http://www.imsglobal.org/profile/cc/ccv1p1/ccv1p1_imswl_v1p1.xsd"
SCHEMA = "IMS Common Cartridge"
SCHEMA_VERSION = "1.1.0"
WEBLINK_TYPE = "imswl_xmlv1p1"
WEBCONTENT_TYPE = "webcontent"
# A fixed date in the archive, so the same course always makes the same package.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Link:
    """One session page's address in one form."""

    session: Session
    form: str
    url: str


# Link forms ---------------------------------------------------------------------


def check_base_url(base_url: str) -> str:
    """The server's public address without a trailing slash; :class:`CanvasError` if it is not one.

    >>> check_base_url("https://hub.example.org/jupyter/")
    'https://hub.example.org/jupyter'
    """
    parts = urlsplit(base_url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise CanvasError(
            f"The base URL '{base_url}' is not a web address. Give the address learners use to reach "
            "the server, with http:// or https:// and no query, e.g. https://companion.example.org."
        )
    return base_url.rstrip("/")


def repo_folder(repo: str) -> str:
    """The folder, in each learner's home, that nbgitpuller pulls ``repo`` into: its last name, without .git.

    >>> repo_folder("https://github.com/psesd/leadership.git")
    'leadership'
    """
    name = (repo or "").rstrip("/").rsplit("/", 1)[-1]
    name = name[: -len(".git")] if name.endswith(".git") else name
    if not re.match(r"^[A-Za-z0-9._-]+$", name) or name in (".", ".."):
        raise CanvasError(
            f"'{repo}' is not a repository address nbgitpuller can pull; give the course repository's "
            "clone URL, e.g. https://github.com/your-org/antiracist-leadership.git."
        )
    return name


def page_url(base_url: str, session: Session) -> str:
    """A session's page on a standalone companion server: ``<base>/session/<n>``."""
    return f"{check_base_url(base_url)}/{session_path(session)}"


def hub_url(base_url: str, path: str) -> str:
    """A page at ``path`` in the learner's home on JupyterHub, opened by Voila in their own server.

    >>> hub_url("https://hub.example.org", "leadership/sessions/02-short.ipynb")
    'https://hub.example.org/hub/user-redirect/voila/render/leadership/sessions/02-short.ipynb'
    """
    return f"{check_base_url(base_url)}/hub/user-redirect/voila/render/{quote(path)}"


def _git_pull_path(base_url: str, repo: str, branch: str, notebook: str, parent: str = "") -> str:
    """The path (no host) of the nbgitpuller link: what JupyterHub redirects to after a login."""
    folder = repo_folder(repo)
    query = urlencode(
        {"repo": repo, "branch": branch, "targetpath": folder, "urlpath": f"voila/render/{_under(parent, folder)}/{notebook}"}
    )
    return f"{urlsplit(check_base_url(base_url)).path}/hub/user-redirect/git-pull?{query}"


def nbgitpuller_url(base_url: str, repo: str, branch: str, notebook: str, parent: str = "") -> str:
    """Pull ``repo`` at ``branch`` into the learner's home, then open ``notebook`` (a path in the repo) in Voila."""
    parts = urlsplit(check_base_url(base_url))
    return f"{parts.scheme}://{parts.netloc}{_git_pull_path(base_url, repo, branch, notebook, parent)}"


def _under(parent: str, folder: str) -> str:
    """``folder`` under nbgitpuller's parent folder (``NBGITPULLER_PARENTPATH``, relative to the learner's home)."""
    parent = (parent or "").strip("/")
    if parent and (parent.startswith(".") or ".." in parent.split("/") or not re.match(r"^[A-Za-z0-9._/-]+$", parent)):
        raise CanvasError(f"'{parent}' is not a folder nbgitpuller can pull into; give NBGITPULLER_PARENTPATH as set in the hub, e.g. courses.")
    return f"{parent}/{folder}" if parent else folder


def lti_url(base_url: str, repo: str, branch: str, notebook: str, parent: str = "") -> str:
    """The nbgitpuller link behind JupyterHub's LTI launch, for a Canvas External Tool item.

    ``custom_next`` holds the hub-relative nbgitpuller path, URL-encoded once more:

    >>> from urllib.parse import parse_qs, urlsplit
    >>> url = lti_url("https://hub.example.org", "https://github.com/psesd/leadership", "main", "s.ipynb")
    >>> url.split("?")[0]
    'https://hub.example.org/hub/lti/launch'
    >>> parse_qs(urlsplit(url).query)["custom_next"][0]
    '/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgithub.com%2Fpsesd%2Fleadership&branch=main&targetpath=leadership&urlpath=voila%2Frender%2Fleadership%2Fs.ipynb'
    """
    launch = f"{check_base_url(base_url)}/hub/lti/launch"
    return f"{launch}?{urlencode({'custom_next': _git_pull_path(base_url, repo, branch, notebook, parent)})}"


def session_url(session: Session, base_url: str, form: str = "page", repo: str | None = None, branch: str = "main", parent: str = "") -> str:
    """The address of one session page in one of :data:`FORMS`."""
    if form == "page":
        return page_url(base_url, session)
    if form not in FORMS:
        raise CanvasError(f"'{form}' is not a link form; use one of: {', '.join(FORMS)}.")
    if not repo:
        raise CanvasError(
            "The JupyterHub links need the course repository: pass --repo with its clone URL "
            "(e.g. https://github.com/your-org/antiracist-leadership.git) and, if it is not main, --branch."
        )
    if not branch:
        raise CanvasError("The branch of the course repository is empty; pass --branch, e.g. main.")
    # The published layout (companion release --to): every page at the top of the pulled folder.
    if form == "hub":
        return hub_url(base_url, f"{_under(parent, repo_folder(repo))}/{session.page}")
    if form == "nbgitpuller":
        return nbgitpuller_url(base_url, repo, branch, session.page, parent)
    return lti_url(base_url, repo, branch, session.page, parent)


def session_links(
    settings: Settings, base_url: str, hub: bool = False, repo: str | None = None, branch: str = "main", parent: str = ""
) -> list[Link]:
    """Every session's links in course order: the ``page`` form, or with ``hub`` the three JupyterHub forms."""
    forms = ("hub", "nbgitpuller", "lti") if hub else ("page",)
    return [
        Link(session, form, session_url(session, base_url, form, repo, branch, parent))
        for session in settings.sessions
        for form in forms
    ]


def links_csv(links: list[Link]) -> str:
    """The links as CSV, one row a link: ``session,number,title,form,url``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["session", "number", "title", "form", "url"])
    writer.writerows([link.session.id, link.session.number, link.session.title, link.form, link.url] for link in links)
    return out.getvalue()


def https_note(base_url: str) -> str | None:
    """A warning when ``base_url`` is plain http: Canvas (HTTPS) cannot frame it, only open it in a new tab."""
    if urlsplit(base_url).scheme == "http":
        return (
            f"{base_url} is plain http. Canvas is served over HTTPS, and browsers will not show an "
            "http page inside it: these links will only work set to open in a new tab. Serve the "
            "pages over HTTPS (and set https = true in course.toml [server]) so Canvas can frame them."
        )
    return None


# The cartridge ----------------------------------------------------------------


def build_package(
    settings: Settings,
    base_url: str,
    output: Path | str,
    hub: bool = False,
    repo: str | None = None,
    branch: str = "main",
    parent: str = "",
) -> Path:
    """Write the IMS Common Cartridge 1.1 for the course to ``output`` (a ``.imscc`` zip) and return its path.

    Its web links use the ``page`` form, or with ``hub`` the ``nbgitpuller`` form
    (which works with any JupyterHub login; an LTI launch needs an External Tool
    item, made by hand from ``session_links(..., hub=True)``).
    """
    output = Path(output)
    if output.suffix != ".imscc":
        raise CanvasError(f"{output} should end in .imscc; Canvas only imports a Common Cartridge by that name.")
    if not output.parent.is_dir():
        raise CanvasError(f"The folder {output.parent} does not exist; create it or write the package elsewhere.")
    form = "nbgitpuller" if hub else "page"
    urls = [session_url(session, base_url, form, repo, branch, parent) for session in settings.sessions]
    files = cartridge_files(settings, urls)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    partial.replace(output)
    return output


def cartridge_files(settings: Settings, urls: list[str]) -> dict[str, bytes]:
    """The files of the cartridge by their path in it, ``imsmanifest.xml`` first; ``urls`` in session order.

    For each session (n = its place in the course): ``session-n/overview.html``
    (a ``webcontent`` resource) and ``session-n/session-page.xml`` (an
    ``imswl_xmlv1p1`` web link). The manifest's organization has one item per
    session under the root item: Canvas makes each of those a module.
    """
    files: dict[str, bytes] = {}
    manifest = _manifest(settings)
    root = manifest.find(f"{{{CC_NS}}}organizations/{{{CC_NS}}}organization/{{{CC_NS}}}item")
    resources = manifest.find(f"{{{CC_NS}}}resources")
    for n, (session, url) in enumerate(zip(settings.sessions, urls, strict=True), 1):
        module = _sub(root, "item", identifier=f"module_{n}")
        _sub(module, "title", text=f"Session {session.number}: {session.title}")

        overview, overview_title = f"session-{n}/overview.html", f"Session {session.number} overview: purpose and preparation"
        _add_item(module, resources, f"overview_{n}", overview_title, WEBCONTENT_TYPE, overview)
        files[overview] = _overview_html(settings, session, url)

        weblink, weblink_title = f"session-{n}/session-page.xml", f"Session {session.number} workbook"
        _add_item(module, resources, f"link_{n}", weblink_title, WEBLINK_TYPE, weblink)
        files[weblink] = _weblink_xml(weblink_title, url)
    return {"imsmanifest.xml": _xml_bytes(manifest, CC_NS), **files}


def _add_item(module: ET.Element, resources: ET.Element, name: str, title: str, kind: str, path: str) -> None:
    """A module item titled ``title``, pointing at a new resource of type ``kind`` held in the file ``path``."""
    item = _sub(module, "item", identifier=f"item_{name}", identifierref=f"resource_{name}")
    _sub(item, "title", text=title)
    # A webcontent resource names its entry file; a web link is read from its file alone.
    entry = {"href": path} if kind == WEBCONTENT_TYPE else {}
    resource = _sub(resources, "resource", identifier=f"resource_{name}", type=kind, **entry)
    _sub(resource, "file", href=path)


def _sub(parent: ET.Element, tag: str, text: str | None = None, ns: str = CC_NS, **attributes: str) -> ET.Element:
    """A child element in namespace ``ns``; ElementTree escapes the text and attributes."""
    element = ET.SubElement(parent, f"{{{ns}}}{tag}", attributes)
    element.text = text
    return element


def _xml_bytes(root: ET.Element, default_ns: str) -> bytes:
    """The document as UTF-8 with an XML declaration, ``default_ns`` written as the default namespace.

    ElementTree names namespaces from one table of its own, so the default is set here, per document."""
    ET.register_namespace("", default_ns)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _manifest(settings: Settings) -> ET.Element:
    """The manifest with its metadata, an empty root item and no resources yet."""
    for prefix, ns in (("lom", LOM_RESOURCE_NS), ("lomimscc", LOM_MANIFEST_NS), ("xsi", XSI_NS)):
        ET.register_namespace(prefix, ns)
    identifier = "companion_" + re.sub(r"[^A-Za-z0-9_.-]", "_", settings.course_id)
    manifest = ET.Element(f"{{{CC_NS}}}manifest", {"identifier": identifier, f"{{{XSI_NS}}}schemaLocation": MANIFEST_SCHEMA_LOCATION})
    # ElementTree declares a namespace only where it is used; lom is declared by the schema location, so declare it.
    manifest.set("xmlns:lom", LOM_RESOURCE_NS)
    metadata = _sub(manifest, "metadata")
    _sub(metadata, "schema", text=SCHEMA)
    _sub(metadata, "schemaversion", text=SCHEMA_VERSION)
    general = _sub(_sub(metadata, "lom", ns=LOM_MANIFEST_NS), "general", ns=LOM_MANIFEST_NS)
    _sub(_sub(general, "title", ns=LOM_MANIFEST_NS), "string", text=settings.title, ns=LOM_MANIFEST_NS)
    if settings.description:
        _sub(_sub(general, "description", ns=LOM_MANIFEST_NS), "string", text=settings.description, ns=LOM_MANIFEST_NS)
    organizations = _sub(manifest, "organizations")
    organization = _sub(organizations, "organization", identifier="organization", structure="rooted-hierarchy")
    _sub(organization, "item", identifier="root")
    _sub(manifest, "resources")
    return manifest


def _weblink_xml(title: str, url: str) -> bytes:
    """The web link resource file: ``<webLink><title/><url href/></webLink>``."""
    root = ET.Element(f"{{{WEBLINK_NS}}}webLink", {f"{{{XSI_NS}}}schemaLocation": WEBLINK_SCHEMA_LOCATION})
    _sub(root, "title", text=title, ns=WEBLINK_NS)
    _sub(root, "url", ns=WEBLINK_NS, href=url)
    return _xml_bytes(root, WEBLINK_NS)


def _overview_html(settings: Settings, session: Session, url: str) -> bytes:
    """The session's overview page: its purpose and what to prepare, and the link to the workbook."""
    html = ET.Element("html", lang="en")
    head = ET.SubElement(html, "head")
    ET.SubElement(head, "meta", charset="utf-8")
    ET.SubElement(head, "title").text = f"Session {session.number}: {session.title}"
    body = ET.SubElement(html, "body")
    ET.SubElement(body, "p").text = settings.title
    ET.SubElement(body, "h1").text = f"Session {session.number}: {session.title}"
    for heading, text in (("Purpose", session.summary), ("What to prepare", session.prepare)):
        if text.strip():
            ET.SubElement(body, "h2").text = heading
            ET.SubElement(body, "p").text = text.strip()
    ET.SubElement(body, "h2").text = "The workbook"
    paragraph = ET.SubElement(body, "p")
    paragraph.text = "Work through the session at your own pace in its workbook: "
    link = ET.SubElement(paragraph, "a", href=url)
    link.text = f"open the Session {session.number} workbook"
    link.tail = ". What you write is saved as you go and stays private unless you choose to share it."
    return b"<!DOCTYPE html>\n" + ET.tostring(html, encoding="utf-8", method="html") + b"\n"
