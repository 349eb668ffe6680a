"""What a browser keeps: compressed responses, and static files cached for as long as they cannot change.

A session page loads about 4.6 MB of JavaScript. Three things keep a learner
from downloading it more than once, over a slow link:

- **Compression.** Tornado compresses text responses (HTML, JavaScript, CSS,
  JSON) when the browser accepts gzip (``compress_response`` in the server's
  settings, see :func:`companion.server.voila_config`).
- **Versioned static files are immutable.** Voila's JavaScript chunks
  (``6573.voila.js``) carry no version in their names, so the pages load them
  from ``/voila/static/v<version>/``, where ``<version>`` changes whenever the
  installed Voila's files do (:func:`static_version`); the widget extensions'
  files carry a content hash in their names, and the template's files a
  ``?v=<hash>``. All of these are sent ``Cache-Control: public,
  max-age=31536000, immutable``: a second visit asks the server for none of them.
- **Everything else has a validator.** Unversioned static files are sent
  ``Cache-Control: no-cache`` with an ``ETag``, so a browser revalidates them
  (a 304 with no body) and never runs a stale copy after an upgrade.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

IMMUTABLE = "public, max-age=31536000, immutable"
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


def cached_handlers(handlers: list, server_url: str, static_paths: list[str], version: str) -> list:
    """Voila's handlers with the companion's caching: the versioned static path added, and each static
    handler replaced by a subclass that sends the right ``Cache-Control``."""
    from jupyter_server.base.handlers import FileFindHandler
    from jupyter_server.utils import url_path_join
    from voila.static_file_handler import MultiStaticFileHandler, TemplateStaticFileHandler

    class VersionedStatic(MultiStaticFileHandler):
        """Voila's static files under ``/voila/static/v<version>/``: immutable, since the version names their content."""

        def set_extra_headers(self, path):
            self.set_header("Cache-Control", IMMUTABLE)

    class Static(MultiStaticFileHandler):
        """Voila's static files at their unversioned address: revalidated each time (ETag)."""

        def set_extra_headers(self, path):
            self.set_header("Cache-Control", "no-cache")

    class Templates(TemplateStaticFileHandler):
        """The template's files, always linked with ``?v=<hash>``: immutable when they are."""

        def set_extra_headers(self, path):
            self.set_header("Cache-Control", IMMUTABLE if self.get_argument("v", None) else "no-cache")

    class Extensions(FileFindHandler):
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
    return [versioned, *cached]

