"""Collections of the simulated world: which Globus collection ids exist and which local
folder backs each of them.

A world file is JSON::

    {"collections": [
        {"id": "6c54cade-bde5-45c1-bdea-f4bd71dba2cc",
         "display_name": "Globus Tutorial Collection 1",
         "entity_type": "GCSv5_mapped_collection",
         "root": "tutorial1",                # relative to the world file's folder, or absolute
         "mapped": false,                    # true: needs a data_access consent
         "files": {"home/share/godata/file1.txt": "abc\n"}}   # optional seed files
    ]}

Paths of the Transfer API are virtual, absolute POSIX paths inside a collection. ``/~/`` is
the user's home folder, ``/home/<username>/`` by default.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import WorldError

__all__ = [
    "MAPPED_COLLECTION_ID",
    "TUTORIAL_COLLECTION_1",
    "TUTORIAL_COLLECTION_2",
    "Collection",
    "World",
    "data_access_scope",
    "default_world",
    "load_world",
]

TUTORIAL_COLLECTION_1 = "6c54cade-bde5-45c1-bdea-f4bd71dba2cc"
TUTORIAL_COLLECTION_2 = "31ce9ba0-176d-45a5-add3-f37d233ba47d"
# A fixed id so tests and docs can name the default world's mapped collection.
MAPPED_COLLECTION_ID = "0b9d4e1a-5c2f-4a8e-9e43-7f1c2d6a5b30"

TRANSFER_SCOPE = "urn:globus:auth:scope:transfer.api.globus.org:all"

_GODATA = {
    "home/share/godata/file1.txt": "This is file1.txt of the Globus tutorial data.\n",
    "home/share/godata/file2.txt": "This is file2.txt of the Globus tutorial data.\n",
    "home/share/godata/file3.txt": "This is file3.txt of the Globus tutorial data.\n",
}


def data_access_scope(collection_id: str) -> str:
    """The Transfer scope with the data_access dependency a mapped collection demands."""
    return f"{TRANSFER_SCOPE}[*https://auth.globus.org/scopes/{collection_id}/data_access]"


@dataclass(frozen=True, kw_only=True)
class Collection:
    """One collection: a Globus id backed by a local folder."""

    id: str
    display_name: str
    root: Path
    entity_type: str = "GCSv5_mapped_collection"
    mapped: bool = False
    home: str = "/home/{username}/"
    owner_string: str = "admin@globus.example"
    description: str = ""
    files: Mapping[str, str] = field(default_factory=dict)

    def home_of(self, username: str) -> str:
        """The virtual home folder of ``username`` (always ends with ``/``)."""
        home = self.home.format(username=username)
        return home if home.endswith("/") else home + "/"

    def virtual(self, path: str | None, username: str) -> str:
        """Normalise a request path: expand ``~``, drop ``..`` above the root.

        An empty path means the home folder, as for Globus.
        """
        if not path:
            path = "/~/"
        if path == "~" or path.startswith("~/"):
            path = "/" + path
        if path == "/~" or path.startswith("/~/"):
            path = self.home_of(username) + path[3:]
        if not path.startswith("/"):
            path = self.home_of(username) + path
        norm = posixpath.normpath(path)
        # normpath keeps a leading "//"; Globus paths have exactly one.
        return "/" + norm.lstrip("/")

    def display(self, path: str | None, username: str) -> str:
        """A request path as Globus shows it back: normalised, but a path under the home
        folder keeps its ``/~/`` (CLI fixtures list ``/~/...`` paths as given)."""
        if not path:
            path = "/~/"
        if path == "~" or path.startswith("~/"):
            path = "/" + path
        if path == "/~" or path.startswith("/~/"):
            rest = posixpath.normpath("/" + path[3:]).lstrip("/")
            return "/~/" + rest
        if not path.startswith("/"):
            rest = posixpath.normpath("/" + path).lstrip("/")
            return "/~/" + rest
        return self.virtual(path, username)

    def local(self, virtual_path: str) -> Path:
        """The local file behind a normalised virtual path."""
        rel = virtual_path.lstrip("/")
        return self.root / rel if rel else self.root

    def document(self) -> dict[str, Any]:
        """The Transfer ``endpoint`` document of this collection."""
        return {
            "DATA_TYPE": "endpoint",
            "id": self.id,
            "display_name": self.display_name,
            "canonical_name": f"sim#{self.id}",
            "name": self.display_name,
            "entity_type": self.entity_type,
            "owner_string": self.owner_string,
            "owner_id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.owner_string)),
            "username": self.owner_string.split("@")[0],
            "description": self.description,
            "organization": "orbit-globus simulator",
            "department": None,
            "keywords": None,
            "contact_email": None,
            "public": True,
            "is_globus_connect": False,
            "gcp_connected": None,
            "gcp_paused": None,
            "non_functional": False,
            "high_assurance": False,
            "authentication_assurance_timeout": None,
            "requires_data_access_consent": self.mapped,
            "default_directory": self.home.replace("{username}", "{server_default}"),
            "force_encryption": False,
            "force_verify": False,
            "disable_verify": False,
            "activated": True,
            "expires_in": -1,
            "shareable": True,
            "acl_available": True,
            "acl_editable": False,
            "in_use": False,
            "mfa_required": False,
            "subscription_id": None,
            "DATA": [],
        }


@dataclass(frozen=True, kw_only=True)
class World:
    """The set of collections, by id."""

    collections: Mapping[str, Collection]

    def get(self, collection_id: str) -> Collection | None:
        return self.collections.get(collection_id.lower())

    def materialise(self, usernames: Iterable[str] = ()) -> None:
        """Create every collection's folder, its seed files and the users' home folders."""
        for coll in self.collections.values():
            coll.root.mkdir(parents=True, exist_ok=True)
            for rel, text in coll.files.items():
                target = coll.local(posixpath.normpath("/" + rel))
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text)
            for name in usernames:
                self.make_home(coll, name)

    def make_home(self, coll: Collection, username: str) -> None:
        coll.local(coll.virtual("/~/", username)).mkdir(parents=True, exist_ok=True)


def _collection(raw: Mapping[str, Any], base: Path) -> Collection:
    try:
        cid = str(uuid.UUID(str(raw["id"])))
        name = str(raw["display_name"])
        root = Path(str(raw["root"]))
    except KeyError as exc:
        raise WorldError(f"a collection needs {exc.args[0]!r}: {dict(raw)!r}") from exc
    except ValueError as exc:
        raise WorldError(f"collection id {raw.get('id')!r} is not a UUID") from exc
    files = raw.get("files", {})
    if not isinstance(files, dict):
        raise WorldError(f"collection {cid}: 'files' must map relative paths to text")
    return Collection(
        id=cid,
        display_name=name,
        root=root if root.is_absolute() else base / root,
        entity_type=str(raw.get("entity_type", "GCSv5_mapped_collection")),
        mapped=bool(raw.get("mapped", False)),
        home=str(raw.get("home", "/home/{username}/")),
        owner_string=str(raw.get("owner_string", "admin@globus.example")),
        description=str(raw.get("description", "")),
        files={str(k): str(v) for k, v in files.items()},
    )


def world_from_dict(raw: Mapping[str, Any], *, base: Path) -> World:
    """Build a world from a parsed world document; relative roots are taken from ``base``."""
    entries = raw.get("collections")
    if not isinstance(entries, list) or not entries:
        raise WorldError("a world needs a non-empty 'collections' list")
    colls: dict[str, Collection] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise WorldError(f"a collection must be an object, not {entry!r}")
        coll = _collection(entry, base)
        if coll.id in colls:
            raise WorldError(f"collection id {coll.id} is declared twice")
        colls[coll.id] = coll
    return World(collections=colls)


def load_world(path: Path, *, root: Path | None = None) -> World:
    """Read a world file; relative collection roots are under ``root`` (else the file's folder)."""
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise WorldError(f"cannot read world file {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise WorldError(f"world file {path} is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise WorldError(f"world file {path} must hold a JSON object")
    return world_from_dict(raw, base=root if root is not None else Path(path).parent)


def default_world(root: Path) -> World:
    """Tutorial Collections 1 and 2 (real ids, godata files) and one mapped collection."""
    return world_from_dict(
        {
            "collections": [
                {
                    "id": TUTORIAL_COLLECTION_1,
                    "display_name": "Globus Tutorial Collection 1",
                    "root": "tutorial-collection-1",
                    "files": _GODATA,
                    "description": "Simulated Globus Tutorial Collection 1",
                },
                {
                    "id": TUTORIAL_COLLECTION_2,
                    "display_name": "Globus Tutorial Collection 2",
                    "root": "tutorial-collection-2",
                    "files": _GODATA,
                    "description": "Simulated Globus Tutorial Collection 2",
                },
                {
                    "id": MAPPED_COLLECTION_ID,
                    "display_name": "Simulated Mapped Collection (needs consent)",
                    "root": "mapped-collection",
                    "mapped": True,
                    "description": "A mapped collection that needs a data_access consent",
                },
            ]
        },
        base=root,
    )
