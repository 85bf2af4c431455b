"""tts_lib.fetch: Chapter 7's checkpoints, local or fetched and verified (served from 127.0.0.1 only)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tts_lib import fetch
from tts_lib.fetch import CheckpointFetchError, checkpoint_dir, manifest_files, raw_url

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "book" / "checkpoints"
ONE = "gpt2_cpu_compact_isotropic_n10_seed0.json"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


class _Server:
    """A static file server on 127.0.0.1 that counts the requests it answers."""

    def __init__(self, folder: Path):
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     functools.partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def no_local(monkeypatch):
    """No local checkpoints anywhere (as on Colab): the default search finds none."""
    monkeypatch.setattr(fetch, "_local_candidates", lambda: [])


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "served"
    shutil.copytree(LOCAL, folder)
    server = _Server(folder)
    yield folder, server
    server.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections are refused


def test_local_checkpoints_are_used_and_nothing_is_fetched(served, tmp_path):
    folder, server = served
    assert checkpoint_dir(LOCAL, cache_dir=tmp_path / "cache", base_url=server.url) == LOCAL
    assert checkpoint_dir().resolve() == LOCAL.resolve()  # the default search finds the source tree's copy
    assert server.requests == [] and not (tmp_path / "cache").exists()


def test_good_fetch_verifies_and_loads_then_uses_the_cache(no_local, served, tmp_path):
    from tts_lib.gpt2_checkpoint import load_checkpoint

    folder, server = served
    cache = tmp_path / "cache"
    got = checkpoint_dir(None, cache_dir=cache, base_url=server.url)
    assert got == cache
    # the registry's files: chapter 7's and 10's checkpoints (chapter 11's folder, smollm2/,
    # is read from a clone only)
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in LOCAL.iterdir() if p.is_file())
    for p in LOCAL.iterdir():
        if p.is_file():
            assert (cache / p.name).read_bytes() == p.read_bytes()
    assert len(server.requests) == 2 * len(fetch.MANIFEST_SHA256)
    model, manifest = load_checkpoint(cache / ONE)  # load_checkpoint's own sha256 check passes
    assert manifest["checkpoint"] == ONE.replace(".json", ".pt")
    # a second call finds the verified files in the cache: no request
    checkpoint_dir(None, cache_dir=cache, base_url=server.url)
    assert len(server.requests) == 2 * len(fetch.MANIFEST_SHA256)


def test_tampered_weights_are_refused_and_not_kept(no_local, served, tmp_path):
    folder, server = served
    pt = folder / ONE.replace(".json", ".pt")
    data = bytearray(pt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pt.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"checkpoint file gpt2_cpu_compact_isotropic_n10_seed0\.pt .*sha256") as err:
        checkpoint_dir(None, cache_dir=cache, base_url=server.url, names=[ONE])
    assert "clone https://github.com/tts-course/training-data-tts" in str(err.value)
    assert not (cache / pt.name).exists()


def test_tampered_manifest_is_refused(no_local, served, tmp_path):
    folder, server = served
    manifest = json.loads((folder / ONE).read_text())
    manifest["seed"] = 1
    (folder / ONE).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=rf"checkpoint file {ONE} .*does not match its sha256"):
        checkpoint_dir(None, cache_dir=tmp_path / "cache", base_url=server.url, names=[ONE])


def test_unreachable_host_names_the_file_and_the_fix(no_local, tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/book/checkpoints"
    with pytest.raises(CheckpointFetchError) as err:
        checkpoint_dir(None, cache_dir=tmp_path / "cache", base_url=url, names=[ONE])
    msg = str(err.value)
    assert ONE in msg and url in msg
    assert "check the network" in msg and "clone https://github.com/tts-course/training-data-tts" in msg


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown checkpoint manifest"):
        checkpoint_dir(Path("/nonexistent"), names=["nope.json"])
    with pytest.raises(ValueError, match="repository_url must look like"):
        raw_url("https://gitlab.com/a/b", "v1", "x")
    with pytest.raises(ValueError, match="'checkpoint'"):
        manifest_files({"sha256": "00"})


def test_default_url_comes_from_the_book_config_at_the_pinned_commit():
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert fetch.REPOSITORY_URL == config["repository"]["url"]
    assert raw_url(fetch.REPOSITORY_URL, "abc123", "book/checkpoints") == (
        "https://raw.githubusercontent.com/tts-course/training-data-tts/abc123/book/checkpoints")
    assert len(fetch.CHECKPOINTS_REF) == 40


def test_registry_matches_the_committed_checkpoints():
    """The registry's manifest hashes are those of book/checkpoints and of the pinned commit's files.

    If this fails after the checkpoints changed: commit them, then
    ``python -m tts_lib.fetch --write-registry`` and commit the registry.
    """
    local = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in LOCAL.glob("*.json")}
    assert fetch.MANIFEST_SHA256 == local
    for name in local:  # every weights file is named and hashed by its manifest
        (pt, sha), = manifest_files(json.loads((LOCAL / name).read_text()))
        assert hashlib.sha256((LOCAL / pt).read_bytes()).hexdigest() == sha
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the pinned commit cannot be checked here")
    for name, sha in fetch.MANIFEST_SHA256.items():
        blob = subprocess.run([git, "show", f"{fetch.CHECKPOINTS_REF}:book/checkpoints/{name}"], cwd=ROOT,
                              capture_output=True, check=True).stdout
        assert hashlib.sha256(blob).hexdigest() == sha, f"{name} at the pinned commit differs"


SMOL = LOCAL / fetch.SMOLLM_FOLDER


def test_smollm_fetch_verifies_every_file_then_uses_the_cache(served, tmp_path, monkeypatch):
    """Chapter 11's folder on Colab: every file fetched into its sub-folder and verified."""
    folder, server = served
    cache = tmp_path / "smol"
    candidates = fetch._local_candidates
    monkeypatch.setattr(fetch, "_local_candidates", lambda: [])
    got = fetch.smollm_dir(None, cache_dir=cache, base_url=f"{server.url}/smollm2")
    assert got == cache
    fetched = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())
    assert fetched == sorted(fetch.SMOLLM_SHA256)
    for rel in fetched:
        assert (cache / rel).read_bytes() == (SMOL / rel).read_bytes()
    n = len(server.requests)
    assert n == len(fetch.SMOLLM_SHA256)
    fetch.smollm_dir(None, cache_dir=cache, base_url=f"{server.url}/smollm2")
    assert len(server.requests) == n  # the cache answers
    # a local folder wins: nothing fetched
    monkeypatch.setattr(fetch, "_local_candidates", candidates)
    assert fetch.smollm_dir().resolve() == SMOL.resolve()


def test_smollm_tampered_adapter_is_refused(no_local, served, tmp_path):
    folder, server = served
    rel = "aligned_seed0_step20/adapter_model.safetensors"
    data = bytearray((folder / "smollm2" / rel).read_bytes())
    data[100] ^= 0xFF
    (folder / "smollm2" / rel).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="adapter_model.safetensors .*does not match its sha256"):
        fetch.smollm_dir(None, cache_dir=tmp_path / "c",
                         base_url=f"{server.url}/smollm2")


def test_smollm_registry_matches_the_committed_folder():
    local = {p.relative_to(SMOL).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in SMOL.rglob("*") if p.is_file()}
    assert fetch.SMOLLM_SHA256 == local


def test_an_explicit_folder_without_files_is_refused_not_fetched(tmp_path):
    with pytest.raises(ValueError, match="`local` folder .* holds no checkpoint manifests"):
        checkpoint_dir(tmp_path / "absent", base_url="http://127.0.0.1:9/")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="`local` folder"):
        checkpoint_dir(tmp_path / "file")
    with pytest.raises(ValueError, match="not chapter 11's folder"):
        fetch.smollm_dir(tmp_path, base_url="http://127.0.0.1:9/")


def test_smollm_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="base_url"):
        fetch.smollm_dir(tmp_path, base_url="ftp://x")
    with pytest.raises(TypeError, match="progress"):
        fetch.smollm_dir(tmp_path, progress=1)
    with pytest.raises(TypeError, match="local"):
        fetch.smollm_dir(3)
