"""File trees of the git store: entries as the Hub lists them, a commit's tree for reading, edits for writing.

`TreeView` answers a tree listing, a paths-info and a file lookup from the store's caches (trees parsed once per
id, a tree's flat listing built once); `FileMap` is the old store's `commit["files"]` over a git tree, for the
server as it is; `TreeEditor` applies a commit's operations as an overlay of the folders they touch, so that
`build()` writes only those and every unchanged folder keeps its id (and is shared with the parent commit).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dulwich.objects import Tree

from hub_tools.local_hub import lfs
from hub_tools.local_hub.errors import HubError, bad_request

if TYPE_CHECKING:
    from hub_tools.local_hub.gitstore import GitStore, Repo, _Handle

MODE_FILE, MODE_EXEC, MODE_LINK, MODE_TREE, MODE_GITLINK = 0o100644, 0o100755, 0o120000, 0o040000, 0o160000


@dataclass(frozen=True)
class FileEntry:
    """A file of a tree. `oid` is its git blob id (of the pointer file, for an LFS file), `size` the content's."""

    path: str
    oid: str
    size: int
    lfs: lfs.Pointer | None = None
    mode: int = MODE_FILE

    @property
    def etag(self) -> str:
        """What `/resolve/` answers as ETag: the sha256 of an LFS file, the git blob id otherwise."""
        return self.lfs.oid if self.lfs else self.oid

    def to_json(self) -> dict:
        """The entry as the Hub's tree and paths-info endpoints write it."""
        item = {"type": "file", "path": self.path, "size": self.size, "oid": self.oid}
        if self.lfs:
            item["lfs"] = {"oid": self.lfs.oid, "size": self.lfs.size, "pointerSize": self.lfs.pointer_size}
        return item


@dataclass(frozen=True)
class DirEntry:
    """A folder of a tree; `oid` is its git tree id."""

    path: str
    oid: str

    def to_json(self) -> dict:
        return {"type": "directory", "path": self.path, "oid": self.oid, "size": 0}


# ---- trees: reading ------------------------------------------------------------------------------------------------
class TreeView:
    """One commit's file tree: look paths up, list folders, answer paths-info. Cheap to make; caches are global."""

    def __init__(self, store: GitStore, handle: _Handle, root: str):
        self.store = store
        self.handle = handle
        self.root = root

    def _node(self, path: str) -> tuple[int, str] | None:
        """(mode, oid) at `path` ('' is the root), or None."""
        if not path:
            return MODE_TREE, self.root
        node: tuple[int, str] = (MODE_TREE, self.root)
        for part in path.split("/"):
            if node[0] != MODE_TREE:
                return None
            node = self.store._tree(self.handle, node[1]).get(part)
            if node is None:
                return None
        return node

    def _file(self, path: str, mode: int, oid: str) -> FileEntry:
        size, pointer = self.store._blob_info(self.handle, oid)
        return FileEntry(path, oid, size, pointer, mode)

    def entry(self, path: str) -> FileEntry | DirEntry | None:
        """The file or folder at `path`, or None."""
        node = self._node(path.strip("/"))
        if node is None or node[0] == MODE_GITLINK:
            return None
        if node[0] == MODE_TREE:
            return DirEntry(path.strip("/"), node[1])
        return self._file(path.strip("/"), *node)

    def file(self, path: str) -> FileEntry | None:
        entry = self.entry(path)
        return entry if isinstance(entry, FileEntry) else None

    def list(self, path: str = "", *, recursive: bool = False) -> list[FileEntry | DirEntry] | None:
        """The entries under folder `path` (sorted by path), all levels when `recursive`; None if not a folder."""
        path = path.strip("/")
        node = self._node(path)
        if node is None or node[0] != MODE_TREE:
            return None
        prefix = f"{path}/" if path else ""
        if not recursive:
            items = []
            for name, (mode, oid) in self.store._tree(self.handle, node[1]).items():
                if mode == MODE_TREE:
                    items.append(DirEntry(prefix + name, oid))
                elif mode != MODE_GITLINK:
                    items.append(self._file(prefix + name, mode, oid))
        else:
            items = [
                DirEntry(prefix + rel, oid) if mode == MODE_TREE else self._file(prefix + rel, mode, oid)
                for rel, mode, oid in self._flat(node[1])
            ]
        return sorted(items, key=lambda item: item.path)

    def _flat(self, tree: str) -> list[tuple[str, int, str]]:
        """Every (relative path, mode, oid) under tree `tree`, folders included; built once per tree id."""
        flat = self.store._flat.get(tree)
        if flat is None:
            flat = []
            for name, (mode, oid) in self.store._tree(self.handle, tree).items():
                if mode == MODE_TREE:
                    flat.append((name, mode, oid))
                    flat.extend((f"{name}/{rel}", m, o) for rel, m, o in self._flat(oid))
                elif mode != MODE_GITLINK:
                    flat.append((name, mode, oid))
            self.store._flat.put(tree, flat, len(flat) + 1)
        return flat

    def files(self) -> list[tuple[str, int, str]]:
        """(path, mode, blob id) of every file, sorted by path."""
        return sorted((p, m, o) for p, m, o in self._flat(self.root) if m != MODE_TREE)

    def file_entries(self) -> list[FileEntry]:
        """Every file of the tree as a FileEntry, sorted by path (sizes from the store's blob-info cache)."""
        return [self._file(p, m, o) for p, m, o in self.files()]

    def dirs(self) -> frozenset[str]:
        """Every folder path of the tree (built once per tree id)."""
        return frozenset(p for p, m, _ in self._flat(self.root) if m == MODE_TREE)

    def paths_info(self, paths: Iterable[str]) -> list[FileEntry | DirEntry]:
        """The entries of `paths` that exist, in the order asked (each at most once)."""
        out, seen = [], set()
        for path in paths:
            path = path.strip("/")
            if not path or path in seen:
                continue
            seen.add(path)
            entry = self.entry(path)
            if entry is not None:
                out.append(entry)
        return out


class FileMap(Mapping):
    """storage.Store's `commit["files"]`: {path: {sha256, size, sha1, lfs}}, read lazily from a git tree."""

    def __init__(self, store: GitStore, repo: Repo, tree: str):
        self._view = TreeView(store, store._handle(repo), tree)
        self._paths: list[str] | None = None

    def __getitem__(self, path: str) -> Mapping:
        if not isinstance(path, str):
            raise KeyError(path)
        entry = self._view.file(path) if path and not path.endswith("/") else None
        if entry is None:
            raise KeyError(path)
        return FileMapEntry(self._view, entry)

    def __contains__(self, path) -> bool:
        return isinstance(path, str) and bool(path) and self._view.file(path) is not None

    def __iter__(self) -> Iterator[str]:
        if self._paths is None:
            self._paths = [p for p, _, _ in self._view.files()]
        return iter(self._paths)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @property
    def file_entries(self) -> list[FileEntry]:
        """Every file of the tree as a FileEntry, sorted by path (sizes from the store's blob-info cache)."""
        return [self._file(p, m, o) for p, m, o in self.files()]

    def dirs(self) -> frozenset[str]:
        return self._view.dirs()


class FileMapEntry(Mapping):
    """One file of a FileMap as storage.Store described it; `sha256` of a plain blob is hashed on first use."""

    _KEYS = ("sha256", "size", "sha1", "lfs")

    def __init__(self, view: TreeView, entry: FileEntry):
        self._view = view
        self._entry = entry

    @property
    def entry(self) -> FileEntry:
        return self._entry

    def __getitem__(self, key: str):
        entry = self._entry
        if key == "size":
            return entry.size
        if key == "lfs":
            return entry.lfs is not None
        if key == "sha256":
            return entry.lfs.oid if entry.lfs else self._view.store._sha256_of(self._view.handle, entry.oid)
        if key == "sha1":
            return self._view.store.blob_sha1(entry.lfs.oid) if entry.lfs else entry.oid
        raise KeyError(key)

    def __iter__(self):
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)


# ---- trees: writing ------------------------------------------------------------------------------------------------
class TreeEditor:
    """Edits on a tree, kept as an overlay of the folders they touch; `build()` writes only those folders.

    Pure apart from `read_tree` (oid -> {name: (mode, oid)}): unchanged folders keep their ids, so the new
    commit shares them with its parent.
    """

    def __init__(self, read_tree, root: str | None):
        self._read = read_tree
        self._root: dict = self._load(root)
        self._added: dict[str, tuple[int, str]] = {}

    def _load(self, oid: str | None) -> dict:
        return dict(self._read(oid)) if oid else {}

    def _folder(self, parts: list[str], create: bool, path: str) -> dict | None:
        node = self._root
        for depth, part in enumerate(parts):
            child = node.get(part)
            if child is None:
                if not create:
                    return None
                child = node[part] = {}
            elif isinstance(child, tuple):
                if child[0] != MODE_TREE:
                    if not create:
                        return None
                    where = "/".join(parts[: depth + 1])
                    raise bad_request(f"Cannot add {path!r}: {where!r} is a file")
                child = node[part] = self._load(child[1])
            node = child
        return node

    def put(self, path: str, mode: int, oid: str) -> None:
        *dirs, name = path.split("/")
        folder = self._folder(dirs, True, path)
        existing = folder.get(name)
        if isinstance(existing, dict) or (isinstance(existing, tuple) and existing[0] == MODE_TREE):
            raise bad_request(f"Cannot add {path!r}: a folder of that name exists")
        folder[name] = (mode, oid)
        self._added[path] = (mode, oid)

    def get(self, path: str) -> tuple[int, str] | None:
        *dirs, name = path.split("/")
        folder = self._folder(dirs, False, path)
        node = folder.get(name) if folder is not None else None
        return node if isinstance(node, tuple) and node[0] != MODE_TREE else None

    def added(self) -> dict[str, tuple[int, str]]:
        return dict(self._added)

    def delete(self, path: str) -> None:
        *dirs, name = path.split("/")
        folder = self._folder(dirs, False, path)
        node = folder.get(name) if folder is not None else None
        if not isinstance(node, tuple) or node[0] == MODE_TREE:
            raise HubError(404, f"File to delete not found: {path}", "EntryNotFound")
        del folder[name]
        self._added.pop(path, None)

    def delete_folder(self, path: str) -> None:
        *dirs, name = path.split("/")
        folder = self._folder(dirs, False, path)
        node = folder.get(name) if folder is not None else None
        if node is None or (isinstance(node, tuple) and node[0] != MODE_TREE):
            raise HubError(404, f"Folder to delete not found: {path}", "EntryNotFound")
        del folder[name]
        for added in [p for p in self._added if p.startswith(path + "/")]:
            del self._added[added]

    def build(self) -> tuple[list[Tree], str]:
        """(the new tree objects, the root tree id). Emptied folders disappear, as in git."""
        new: list[Tree] = []

        def write(node: dict) -> str | None:
            tree = Tree()
            for name, child in node.items():
                if isinstance(child, dict):
                    oid = write(child)
                    if oid is not None:
                        tree.add(name.encode("utf-8", "surrogateescape"), MODE_TREE, oid.encode())
                else:
                    tree.add(name.encode("utf-8", "surrogateescape"), child[0], child[1].encode())
            if not len(tree) and node is not self._root:
                return None
            new.append(tree)
            return tree.id.decode()

        root = write(self._root)
        return new, root
