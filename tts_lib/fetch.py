"""The committed checkpoints of Chapters 7, 10 and 11, here or fetched (Colab, a bare ``pip install``).

:func:`checkpoint_dir` returns a folder holding the checkpoint manifests (``*.json``) and weights
(``*.pt``) that :func:`tts_lib.gpt2_checkpoint.load_checkpoint` reads:

* the local ``book/checkpoints/`` (or ``checkpoints/`` next to the notebook) when it is there:
  nothing is fetched;
* else the files committed to the course repository at the pinned commit
  :data:`CHECKPOINTS_REF`, downloaded once with pooch into a cache folder. Each manifest is
  verified by the sha256 in :data:`MANIFEST_SHA256` (written by
  ``python -m tts_lib.fetch --write-registry``), each weights file by the sha256 its manifest
  records (:func:`manifest_files`).

:func:`smollm_dir` does the same for Chapter 11's folder ``book/checkpoints/smollm2/`` (LoRA
adapters, their manifests, the committed generations), each file verified by the sha256 pinned
in :data:`SMOLLM_SHA256`.

The download URL is built from :data:`REPOSITORY_URL`, which is the ``repository.url`` of the
book's ``_config.yml`` (a test checks that the two agree).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tts_lib._checkpoint_registry import CHECKPOINTS_REF, MANIFEST_SHA256, SMOLLM_SHA256

REPOSITORY_URL = "https://github.com/tts-course/training-data-tts"
"""The course repository: ``repository.url`` of ``_config.yml``."""
CHECKPOINTS_PATH = "book/checkpoints"
"""Where the checkpoints are committed, relative to the repository root."""
SMOLLM_FOLDER = "smollm2"
"""Chapter 11's sub-folder of :data:`CHECKPOINTS_PATH`."""

__all__ = [
    "CHECKPOINTS_PATH",
    "CHECKPOINTS_REF",
    "MANIFEST_SHA256",
    "REPOSITORY_URL",
    "SMOLLM_FOLDER",
    "SMOLLM_SHA256",
    "CheckpointFetchError",
    "checkpoint_dir",
    "manifest_files",
    "raw_url",
    "smollm_dir",
]


class CheckpointFetchError(OSError):
    """A checkpoint file could not be downloaded (no network, wrong URL, server error).

    Defined in Chapter 7.
    """


def _check_str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be a string, got {type(value).__name__}")
    return value


def _check_file_name(value: object, name: str) -> str:
    """A plain file name: no folder part, so a download stays inside its cache folder."""
    v = _check_str(value, name)
    if v in ("", ".", "..") or "/" in v or "\\" in v or "\0" in v:
        raise ValueError(f"`{name}` must be a plain file name (no folder part), got {v!r}")
    return v


def _check_path_like(value: object, name: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, (str, Path)):
        raise TypeError(f"`{name}` must be a folder path (str or pathlib.Path) or None, got {type(value).__name__}")
    if isinstance(value, str) and ("\0" in value or not value):
        raise ValueError(f"`{name}` must be a non-empty path without NUL characters, got {value!r}")
    return Path(value)


def _check_fetch_args(local: object, cache_dir: object, base_url: object, progress: object,
                      folder: str) -> tuple[Path | None, Path | None]:
    """The checks :func:`checkpoint_dir` and :func:`smollm_dir` share; ``folder`` names what
    ``base_url`` must point to."""
    local_path = _check_path_like(local, "local")
    cache_path = _check_path_like(cache_dir, "cache_dir")
    if base_url is not None:
        url = _check_str(base_url, "base_url")
        if not re.fullmatch(r"https?://[^\s/]+(?:/\S*)?", url):
            raise ValueError(f"`base_url` must be an http(s) URL of {folder}, got {base_url!r}")
    if not isinstance(progress, bool):
        raise TypeError(f"`progress` must be True or False, got {progress!r}")
    return local_path, cache_path


def raw_url(repository_url: str, ref: str, path: str) -> str:
    """The raw-file URL of ``path`` at ``ref`` in a GitHub repository ``https://github.com/OWNER/NAME``.

    Defined in Chapter 7.
    """
    _check_str(repository_url, "repository_url")
    m = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?", repository_url)
    if m is None:
        raise ValueError(f"`repository_url` is not a GitHub repository: repository_url must look like "
                         f"https://github.com/OWNER/NAME, got {repository_url!r}")
    _check_str(ref, "ref")
    if not re.fullmatch(r"[\w.-]+(?:/[\w.-]+)*", ref) or ".." in ref.split("/"):
        raise ValueError(f"`ref` must be a tag, branch or commit (letters, digits, . _ - /), got {ref!r}")
    _check_str(path, "path")
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts or any(p in (".", "..") for p in parts) or "\0" in path:
        raise ValueError(f"`path` must be a relative path inside the repository (no '..'), got {path!r}")
    return f"https://raw.githubusercontent.com/{m.group(1)}/{m.group(2)}/{ref}/{path.strip('/')}"


def manifest_files(manifest: dict) -> list[tuple[str, str]]:
    """``(file name, sha256)`` of every file a checkpoint manifest names (today: its weights file).

    The one place that knows the manifest format: adapt it here if the format changes.

    Defined in Chapter 7.
    """
    if not isinstance(manifest, dict):
        raise TypeError(f"`manifest` must be a dict (a parsed checkpoint manifest), got {type(manifest).__name__}")
    if "checkpoint" not in manifest or "sha256" not in manifest:
        raise ValueError("`manifest`: a checkpoint manifest needs 'checkpoint' (file name) and 'sha256' keys")
    name = _check_file_name(manifest["checkpoint"], "manifest['checkpoint']")
    sha = manifest["sha256"]
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ValueError(f"`manifest['sha256']` must be 64 lowercase hex digits (a sha256), got {sha!r}")
    return [(name, sha)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _local_candidates() -> list[Path]:
    here = Path(__file__).resolve().parents[1] / CHECKPOINTS_PATH  # a source checkout / editable install
    return [Path("checkpoints"), Path(CHECKPOINTS_PATH), here]


def _has_checkpoints(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.json"))


def _retrieve(url: str, sha256: str, name: str, folder: Path, progress: bool) -> Path:
    import pooch  # imported here: only a fetch needs it
    import requests

    fix = (f"check the network, or clone {REPOSITORY_URL} and run the notebook from its book/ folder "
           f"(then {CHECKPOINTS_PATH}/ is used and nothing is fetched)")
    try:
        path = pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=name, path=folder,
                              downloader=pooch.HTTPDownloader(progressbar=progress, timeout=60))
    except requests.exceptions.RequestException as err:
        raise CheckpointFetchError(f"could not download checkpoint file {name} from {url} "
                                   f"({type(err).__name__}): {fix}") from err
    except ValueError as err:
        if "hash" not in str(err).lower():
            raise
        raise ValueError(f"checkpoint file {name} downloaded from {url} does not match its sha256 "
                         f"{sha256[:12]}… (the file on the server differs from the pinned commit "
                         f"{CHECKPOINTS_REF[:12]}); nothing was kept: {fix}") from err
    return Path(path)


def checkpoint_dir(
    local: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    base_url: str | None = None,
    names: Iterable[str] | None = None,
    progress: bool = False,
) -> Path:
    """The folder of Chapter 7's checkpoints: local when present, else fetched and verified.

    Args:
        local: the folder of the manifests (``*.json``) and weights, used as it is (a folder
            without manifests is refused: nothing is fetched in its place). Default (None): the
            first of ``checkpoints/``, ``book/checkpoints/`` (relative to the working
            directory) and the source tree's ``book/checkpoints/`` that holds them, else a fetch.
        cache_dir: where fetched files go. Default: pooch's per-user cache
            ``…/tts_lib/checkpoints-<commit>``.
        base_url: URL of the folder of checkpoint files. Default: the raw-file URL of
            ``book/checkpoints`` in :data:`REPOSITORY_URL` at :data:`CHECKPOINTS_REF`.
        names: manifest file names to fetch (default: all of :data:`MANIFEST_SHA256`).
        progress: show a download progress bar (needs tqdm).

    Returns:
        The folder (manifests and weights side by side).

    Raises:
        CheckpointFetchError: a file could not be downloaded (the message names it and the fix).
        ValueError: a downloaded file does not match its sha256, or an unknown manifest name.

    Defined in Chapter 7.
    """
    local, cache_dir = _check_fetch_args(local, cache_dir, base_url, progress, "the folder of checkpoint files")
    if names is not None:
        if isinstance(names, (str, bytes, dict)) or not isinstance(names, Iterable):
            raise TypeError(f"`names` must be a list of manifest file names or None, got {type(names).__name__}")
        names = [_check_file_name(n, "names") for n in names]
    wanted = sorted(MANIFEST_SHA256) if names is None else list(names)
    unknown = [n for n in wanted if n not in MANIFEST_SHA256]
    if unknown:
        raise ValueError(f"unknown checkpoint manifest(s) {unknown} in `names`; known: {sorted(MANIFEST_SHA256)}")
    if local is not None:
        if not _has_checkpoints(local):
            raise ValueError(f"`local` folder {str(local)!r} holds no checkpoint manifests (*.json); "
                             "pass the folder that does (e.g. book/checkpoints of a clone), or local=None "
                             "to search the usual places and fetch if none has them")
        return local
    for folder in _local_candidates():
        if _has_checkpoints(folder):
            return folder
    if cache_dir is None:
        import pooch

        cache_dir = Path(pooch.os_cache("tts_lib")) / f"checkpoints-{CHECKPOINTS_REF[:12]}"
    cache = Path(cache_dir)
    base = (base_url or raw_url(REPOSITORY_URL, CHECKPOINTS_REF, CHECKPOINTS_PATH)).rstrip("/")
    for name in wanted:
        manifest_path = _retrieve(f"{base}/{name}", MANIFEST_SHA256[name], name, cache, progress)
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        for file_name, sha256 in manifest_files(manifest):
            _retrieve(f"{base}/{file_name}", sha256, file_name, cache, progress)
    return cache


def _has_smollm(folder: Path) -> bool:
    return folder.is_dir() and (folder / "evaluation.json").is_file()


def smollm_dir(
    local: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    base_url: str | None = None,
    progress: bool = False,
) -> Path:
    """The folder of Chapter 11's committed files: local when present, else fetched and verified.

    Args:
        local: chapter 11's folder, used as it is (a folder without ``evaluation.json`` is
            refused). Default (None): the first of ``checkpoints/smollm2``,
            ``book/checkpoints/smollm2`` (relative to the working directory) and the source
            tree's that holds it, else a fetch.
        cache_dir: where fetched files go. Default: pooch's per-user cache
            ``…/tts_lib/smollm2-<commit>``.
        base_url: URL of the ``smollm2`` folder. Default: its raw-file URL in
            :data:`REPOSITORY_URL` at :data:`CHECKPOINTS_REF`.
        progress: show a download progress bar (needs tqdm).

    Returns:
        The folder: adapters (one sub-folder each), manifests, generations, ``evaluation.json``.

    Raises:
        CheckpointFetchError: a file could not be downloaded (the message names it and the fix).
        ValueError: a downloaded file does not match the sha256 pinned in :data:`SMOLLM_SHA256`.

    Defined in Chapter 11.
    """
    local, cache_dir = _check_fetch_args(local, cache_dir, base_url, progress, "the smollm2 folder")
    if local is not None:
        if not _has_smollm(local):
            raise ValueError(f"`local` folder {str(local)!r} is not chapter 11's folder (no evaluation.json); "
                             "pass book/checkpoints/smollm2 of a clone, or local=None to search the usual "
                             "places and fetch if none has it")
        return local
    for folder in (f / SMOLLM_FOLDER for f in _local_candidates()):
        if _has_smollm(folder):
            return folder
    if cache_dir is None:
        import pooch

        cache_dir = Path(pooch.os_cache("tts_lib")) / f"smollm2-{CHECKPOINTS_REF[:12]}"
    cache = Path(cache_dir)
    base = (base_url or raw_url(REPOSITORY_URL, CHECKPOINTS_REF,
                                f"{CHECKPOINTS_PATH}/{SMOLLM_FOLDER}")).rstrip("/")
    for rel, sha256 in sorted(SMOLLM_SHA256.items()):
        *subs, name = rel.split("/")
        for part in [*subs, name]:
            _check_file_name(part, "SMOLLM_SHA256")
        _retrieve(f"{base}/{rel}", sha256, name, cache.joinpath(*subs), progress)
    return cache


def write_registry(folder: str | Path | None = None, ref: str | None = None) -> Path:
    """Rewrite ``tts_lib/_checkpoint_registry.py`` from the committed checkpoints.

    ``ref`` defaults to the last commit that changed ``book/checkpoints`` (run it after that
    commit, with a clean ``book/checkpoints``).

    Defined in Chapter 7.
    """
    root = Path(__file__).resolve().parents[1]
    folder = Path(folder) if folder is not None else root / CHECKPOINTS_PATH
    if ref is None:
        ref = subprocess.run(["git", "log", "-1", "--format=%H", "--", CHECKPOINTS_PATH], cwd=root,
                             capture_output=True, text=True, check=True).stdout.strip()
    hashes = {p.name: _sha256(p) for p in sorted(folder.glob("*.json"))}
    smollm = {p.relative_to(folder / SMOLLM_FOLDER).as_posix(): _sha256(p)
              for p in sorted((folder / SMOLLM_FOLDER).rglob("*")) if p.is_file()}
    lines = [
        '"""Pinned commit and manifest hashes of the committed checkpoints (``python -m tts_lib.fetch',
        '--write-registry`` writes this file; do not edit it by hand)."""',
        "# ruff: noqa: E501",
        "",
        f'CHECKPOINTS_REF = "{ref}"',
        "MANIFEST_SHA256 = {",
        *(f'    "{name}": "{digest}",' for name, digest in hashes.items()),
        "}",
        f"# Chapter 11: every file of {CHECKPOINTS_PATH}/{SMOLLM_FOLDER}/, by relative path",
        "SMOLLM_SHA256 = {",
        *(f'    "{name}": "{digest}",' for name, digest in smollm.items()),
        "}",
        "",
    ]
    out = Path(__file__).with_name("_checkpoint_registry.py")
    out.write_text("\n".join(lines), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m tts_lib.fetch [--smollm] [--write-registry]``: print the checkpoint folder
    (Chapter 11's with ``--smollm``; fetching it if needed), or rewrite the registry; unknown
    arguments exit with status 2 (argparse).

    Defined in Chapter 7.
    """
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tts_lib.fetch",
                                 description="Print the folder of the course's GPT-2 checkpoints (fetched and "
                                             "verified when not in this checkout).")
    ap.add_argument("--write-registry", action="store_true",
                    help="rewrite tts_lib/_checkpoint_registry.py from book/checkpoints (maintainers)")
    ap.add_argument("--smollm", action="store_true",
                    help="Chapter 11's folder (LoRA adapters, generations) instead of the checkpoints")
    args = ap.parse_args(argv)
    if args.write_registry:
        print(write_registry())
    else:
        print(smollm_dir(progress=True) if args.smollm else checkpoint_dir(progress=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
