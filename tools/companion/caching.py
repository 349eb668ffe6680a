"""What a browser keeps: compressed responses, and static files cached for as long as they cannot change.

A session page loads about 4.6 MB of JavaScript. Three things keep a learner
from downloading it more than once, over a slow link:

- **Compression.** Tornado compresses text responses (HTML, JavaScript, CSS,
  JSON) when the browser accepts gzip (``compress_response`` in the server's
  settings, see :func:`companion.server.voila_config`), and the messages on a
  page's kernel websocket when the browser offers ``permessage-deflate``
  (:data:`WEBSOCKET_COMPRESSION`).
- **Versioned static files are immutable.** Voila's JavaScript chunks
  (``6573.voila.js``) carry no version in their names, so the pages load them
  from ``/voila/static/v<version>/``, where ``<version>`` changes whenever the
  installed Voila's files do (:func:`static_version`); the widget extensions'
  files carry a content hash in their names, and the template's files a
  ``?v=<hash>`` (the companion's front end among them, one script and one stylesheet:
  :mod:`companion.page_scripts`). All of these are sent ``Cache-Control: public,
  max-age=31536000, immutable``: a second visit asks the server for none of them.
- **Everything else has a validator.** Unversioned static files are sent
  ``Cache-Control: no-cache`` with an ``ETag``, so a browser revalidates them
  (a 304 with no body) and never runs a stale copy after an upgrade.

- **Later visits run the page's front end from the browser.** A service worker
  (``templates/companion/worker.js``, served at ``<base_url>companion-worker.js``
  by :func:`worker_handler`) keeps ``page-scripts.js`` in the browser's Cache
  Storage. Chromium keeps a script that a worker stored as it installed together
  with its compiled code, so the next visit neither downloads nor compiles it;
  from the HTTP cache it is compiled again on the second visit. The worker
  answers that one file and nothing else (no fetch handler, one static route).

A static file is compressed once per server, not once per visit
(:class:`Compressed`): sending a first visit's 90 static files (4.6 MB of
scripts) cost the server 0.27–0.31 CPU-seconds when each was gzipped as it
went out, and 0.10–0.13 from the copies compressed once; a cohort opening the
course for the first time pays it once per learner.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from pathlib import Path

from jupyter_server.auth.decorator import allow_unauthenticated
from tornado.web import GZipContentEncoding

IMMUTABLE = "public, max-age=31536000, immutable"
# Tornado's settings for the kernel websockets' messages: JSON, compressed when the browser offers
# permessage-deflate (every current browser does). A page's widget states come in one message of
# about 75 KB (session 1), 8 KB compressed. The server keeps a compressor of a few hundred KB per
# open page (zlib's default window and memory level).
WEBSOCKET_COMPRESSION = {"websocket_compression_options": {}}
# A file name with a content hash: remoteEntry.c8c9eed2cdefde57.js, 704.6a820cc839aca480.js
HASHED_NAME = re.compile(r"\.[0-9a-f]{16,}\.(js|css|woff2?|svg|json)$")


def static_version(paths: list[str]) -> str:
    """Twelve hex digits that change whenever a file in Voila's static folders changes (name, size or time)."""
    digest = hashlib.sha256()
    for root in paths:
        for folder, _, files in sorted(os.walk(root)):
            for name in sorted(files):
                stat = (Path(folder) / name).stat()
                digest.update(f"{folder}/{name}:{stat.st_size}:{int(stat.st_mtime)}\n".encode())
    return digest.hexdigest()[:12]


def versioned_page_config(version: str, base_url: str):
    """A Voila ``page_config_hook`` that points the page's script chunks at the versioned static path."""
    from jupyter_server.utils import url_path_join

    def hook(page_config: dict, **_kwargs) -> dict:
        page_config["fullStaticUrl"] = url_path_join(base_url, f"voila/static/v{version}")
        return page_config

    return hook


# The compressed static files kept, by absolute path: (modified time in ns, size, gzipped bytes, or None
# for a file that would not shrink).
_GZIPPED: dict[str, tuple[int, int, bytes | None]] = {}
# At most this many compressed bytes are kept (a session page's files come to about 1.4 MB); past it,
# a file is compressed as it is sent, as before.
GZIPPED_KEPT = 64 * 2**20
# A file larger than this is compressed as it is sent, never read whole.
GZIPPED_LARGEST = 16 * 2**20


def gzipped(path: str) -> bytes | None:
    """The file at ``path`` gzipped (tornado's level, no time stamp), from the kept copy while the
    file's size and modified time are unchanged; None when it is too large to hold or would not shrink."""
    stat = os.stat(path)
    kept = _GZIPPED.get(path)
    if kept is not None and kept[:2] == (stat.st_mtime_ns, stat.st_size):
        return kept[2]
    if stat.st_size > GZIPPED_LARGEST:
        return None
    with open(path, "rb") as file:
        body = gzip.compress(file.read(), GZipContentEncoding.GZIP_LEVEL, mtime=0)
    if len(body) >= stat.st_size:
        body = None  # sent as it is; kept as such, so that it is not compressed again to find that out
    if path in _GZIPPED or sum(len(k[2] or b"") for k in _GZIPPED.values()) + len(body or b"") <= GZIPPED_KEPT:
        _GZIPPED[path] = (stat.st_mtime_ns, stat.st_size, body)
    return body


class Compressed:
    """For a tornado ``StaticFileHandler``: a compressible file goes gzipped from a copy compressed
    once per server (:func:`gzipped`), where tornado would compress it again for every visit.

    Only when the server compresses responses (``compress_response``), the browser accepts gzip and
    asks for the whole file (no ``Range``); everything else (the path's checks, the headers, the ETag
    and the 304 answer) is the handler's own. Tornado's compression sees ``Content-Encoding`` set
    and leaves the body alone, adding its ``Vary: Accept-Encoding`` as for any response it compresses."""

    async def get(self, path: str, include_body: bool = True) -> None:
        headers = self.request.headers
        if not self.settings.get("compress_response") or "gzip" not in headers.get("Accept-Encoding", "") or "Range" in headers:
            return await super().get(path, include_body)
        # The first steps of StaticFileHandler.get, through the handler's own overrides, in its order:
        # Voila's get_absolute_path sets self.root to the folder the file was found in.
        self.path = self.parse_url_path(path)
        absolute_path = self.get_absolute_path(self.root, self.path)
        self.absolute_path = self.validate_absolute_path(self.root, absolute_path)
        if self.absolute_path is None:
            return
        body = gzipped(self.absolute_path) if _compressible(self.get_content_type()) else None
        if body is None:
            return await super().get(path, include_body)
        self.modified = self.get_modified_time()
        self.set_headers()
        if self.should_return_304():
            self.set_status(304)
            return
        self.set_header("Content-Encoding", "gzip")
        self.set_header("Content-Length", len(body))
        if include_body:
            self.write(body)

    # jupyter_server serves its static files to anyone (its FileFindHandler.get says so the same way).
    get = allow_unauthenticated(get)


def _compressible(content_type: str) -> bool:
    """Whether tornado compresses a response of this type (its own rule)."""
    kind = content_type.split(";")[0]
    return kind.startswith("text/") or kind in GZipContentEncoding.CONTENT_TYPES


def cached_handlers(handlers: list, server_url: str, static_paths: list[str], version: str) -> list:
    """Voila's handlers with the companion's caching: the versioned static path added, and each static
    handler replaced by a subclass that sends the right ``Cache-Control``."""
    from jupyter_server.base.handlers import FileFindHandler
    from jupyter_server.utils import url_path_join
    from voila.static_file_handler import MultiStaticFileHandler, TemplateStaticFileHandler

    class VersionedStatic(Compressed, MultiStaticFileHandler):
        """Voila's static files under ``/voila/static/v<version>/``: immutable, since the version names their content."""

        def set_extra_headers(self, path):
            self.set_header("Cache-Control", IMMUTABLE)

    class Static(Compressed, MultiStaticFileHandler):
        """Voila's static files at their unversioned address: revalidated each time (ETag)."""

        def set_extra_headers(self, path):
            self.set_header("Cache-Control", "no-cache")

    class Templates(Compressed, TemplateStaticFileHandler):
        """The template's files, always linked with ``?v=<hash>``: immutable when they are."""

        def set_extra_headers(self, path):
            self.set_header("Cache-Control", IMMUTABLE if self.get_argument("v", None) else "no-cache")

    class Extensions(Compressed, FileFindHandler):
        """The widget extensions' files: immutable when their names carry a content hash."""

        def set_headers(self) -> None:
            super().set_headers()
            if HASHED_NAME.search(self.request.path):
                self.set_header("Cache-Control", IMMUTABLE)

    replacements = {
        url_path_join(server_url, r"/voila/static/(.*)"): Static,
        url_path_join(server_url, r"/voila/templates/(.*)"): Templates,
        url_path_join(server_url, r"/voila/labextensions/(.*)"): Extensions,
    }
    cached = []
    for handler in handlers:
        pattern, cls, *rest = handler
        if pattern in replacements:
            cached.append((pattern, replacements[pattern], *rest))
        else:
            cached.append(handler)
    versioned = (url_path_join(server_url, f"/voila/static/v{version}/(.*)"), VersionedStatic, {"paths": static_paths, "default_filename": None})
    return [versioned, worker_handler(server_url), *cached]


# The service worker (templates/companion/worker.js) that keeps page-scripts.js compiled in the browser.
WORKER = Path(__file__).parent / "templates" / "companion" / "worker.js"
WORKER_PATH = "companion-worker.js"


def worker_handler(server_url: str) -> tuple:
    """The route of the companion's service worker, at the top of the server's URL so that its scope
    is every page the server sends (a worker controls only pages under its own folder)."""
    from jupyter_server.utils import url_path_join
    from tornado.web import RequestHandler

    class Worker(RequestHandler):
        @allow_unauthenticated
        def get(self) -> None:
            self.set_header("Content-Type", "text/javascript; charset=UTF-8")
            self.set_header("Cache-Control", "no-cache")
            self.finish(WORKER.read_bytes())

    return (url_path_join(server_url, WORKER_PATH), Worker)

