"""Find plugins: ``plugins/<id>/plugin.toml`` folders and the ``workstation.plugins`` entry-point group.

An entry point names either a plugin folder (a ``str`` or ``Path``), a callable returning one, or a
module whose own folder holds ``plugin.toml`` -- so a third party can ``pip install`` a plugin.

Model files are looked up, in order: in the plugin folder; in ``<dir>/<id>/`` and ``<dir>/`` for each
folder of the model search path (``WORKSTATION_MODEL_PATH``, ``os.pathsep``-separated); and finally in
``../shared/models/<id>/`` next to the repository, when that folder exists.  A missing model is an
error that lists every place looked in.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType

from workstation.ai.manifest import Manifest, ManifestError, load_manifest

ENTRY_POINT_GROUP = "workstation.plugins"
MANIFEST_NAME = "plugin.toml"
REPO_ROOT = Path(__file__).resolve().parents[2]
BUILTIN_PLUGINS = REPO_ROOT / "plugins"
SHARED_MODELS = REPO_ROOT.parent / "shared" / "models"


class ModelNotFound(FileNotFoundError):
    """The plugin's model file is in none of the places searched (they are listed in the message)."""


@dataclass(frozen=True)
class Plugin:
    manifest: Manifest
    folder: Path
    origin: str  # "folder" or "entry point NAME"

    @property
    def id(self) -> str:
        return self.manifest.id


@dataclass(frozen=True)
class Registry:
    plugins: tuple[Plugin, ...]
    #: Plugins that could not be read: (where, why).  Listed to the user, never fatal.
    problems: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def get(self, plugin_id: str) -> Plugin:
        for p in self.plugins:
            if p.id == plugin_id:
                return p
        known = ", ".join(p.id for p in self.plugins) or "none"
        raise KeyError(f"no plugin {plugin_id!r} (installed: {known})")


def model_search_path(env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """Folders from ``WORKSTATION_MODEL_PATH``, then the shared models folder when present."""
    env = os.environ if env is None else env
    dirs = [Path(p).expanduser() for p in env.get("WORKSTATION_MODEL_PATH", "").split(os.pathsep) if p]
    if SHARED_MODELS.is_dir():
        dirs.append(SHARED_MODELS)
    return tuple(dirs)


def resolve_model(plugin: Plugin, search_path: Sequence[Path] = (), name: str | None = None) -> Path:
    """The model file of ``plugin`` (or its file ``name``, e.g. one of its ``extra_models``); raises
    :class:`ModelNotFound` naming every place looked in."""
    name = plugin.manifest.model if name is None else name
    candidates = [plugin.folder / name]
    for d in search_path:
        candidates += [Path(d) / plugin.id / name, Path(d) / name]
    for c in candidates:
        if c.is_file():
            return c
    looked = "; ".join(str(c) for c in candidates)
    raise ModelNotFound(f"plugin {plugin.id!r}: model file {name!r} not found (looked in: {looked}); "
                        "put it in the plugin folder or add its folder to WORKSTATION_MODEL_PATH")


def discover(folders: Iterable[Path] | None = None, *, entry_points: bool = True) -> Registry:
    """Every plugin in the given folders (default: the built-in ``plugins/``) and the entry-point group.

    A plugin id found twice is reported as a problem; the first one found (built-in first) is kept.
    """
    plugins: dict[str, Plugin] = {}
    problems: list[tuple[str, str]] = []
    for folder in (BUILTIN_PLUGINS,) if folders is None else folders:
        for child in sorted(Path(folder).glob(f"*/{MANIFEST_NAME}")):
            _add(child.parent, "folder", plugins, problems)
    if entry_points:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                folder = _entry_point_folder(ep.load())
            except Exception as exc:  # noqa: BLE001 - a broken third-party plugin must not stop the others
                problems.append((f"entry point {ep.name}", f"cannot load: {exc}"))
                continue
            _add(folder, f"entry point {ep.name}", plugins, problems)
    return Registry(tuple(sorted(plugins.values(), key=lambda p: p.id)), tuple(problems))


def _entry_point_folder(obj: object) -> Path:
    if isinstance(obj, ModuleType):
        return Path(obj.__file__ or "").parent
    if callable(obj):
        obj = obj()
    if isinstance(obj, (str, Path)):
        return Path(obj)
    raise TypeError(f"expected a folder, a callable returning one, or a module; got {type(obj).__name__}")


def _add(folder: Path, origin: str, plugins: dict[str, Plugin], problems: list[tuple[str, str]]) -> None:
    try:
        manifest = load_manifest(folder / MANIFEST_NAME)
    except ManifestError as exc:
        problems.append((str(folder), str(exc)))
        return
    if manifest.id in plugins:
        problems.append((str(folder), f"plugin id {manifest.id!r} is already provided by {plugins[manifest.id].folder}"))
        return
    plugins[manifest.id] = Plugin(manifest, folder, origin)
