"""book/_ext/execution_guard.py: slow cells run on, stalls are named, chapters say they start.

nbclient-level tests run small notebooks in a real kernel with short slices; two tests
build small books with ``jupyter-book`` (about 20 s each): a line per notebook, a tqdm bar
echoed to the log, a failing cell reported as the course's error, not Sphinx's, and the
chapters executed two at a time into the cache.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import execution_guard as guard  # noqa: E402

guard.patch_nbclient()


@pytest.fixture
def said(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    lines: list[str] = []
    monkeypatch.setitem(guard.SETTINGS, "say", lines.append)
    monkeypatch.setitem(guard.SETTINGS, "poll", 1.0)
    monkeypatch.setitem(guard.SETTINGS, "stall", 4.0)
    monkeypatch.setitem(guard.SETTINGS, "echo", 0.0)
    return lines


def _client(cells: list[str], timeout: int, drop_reads: int = 0) -> NotebookClient:
    """A client for ``cells``; the first ``drop_reads`` reads of the shell socket miss
    their wake-up as in jupyter/nbclient#312 (wait out the slice, read nothing)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3")
    left = [drop_reads]

    def hook(cell: object, cell_index: int) -> None:
        channel = client.kc.shell_channel
        if getattr(channel, "_dropping", False):
            return
        real = channel.get_msg

        async def get_msg(timeout: float | None = None) -> dict:
            if left[0] > 0:
                left[0] -= 1
                await asyncio.sleep(timeout or 0)
                raise Empty
            return await real(timeout=timeout)

        channel.get_msg, channel._dropping = get_msg, True

    client.on_cell_execute = hook
    return client


def test_slow_cell_runs_past_the_slice_and_is_reported(said: list[str]) -> None:
    client = _client(["import time; time.sleep(3.5); print('done')"], timeout=60)
    client.execute()
    assert client.nb.cells[0].outputs[0]["text"].strip() == "done"
    running = [ln for ln in said if "still running" in ln]
    assert len(running) >= 2 and "per-cell limit 60 s" in running[0], said


def test_cell_past_the_limit_fails_and_is_named(said: list[str]) -> None:
    client = _client(["x = 1", "import time\ntime.sleep(30)"], timeout=2)
    with pytest.raises(CellTimeoutError, match=r"cell 1 .*first line 'import time'"):
        client.execute()


def test_missed_wake_up_is_recovered(said: list[str]) -> None:
    client = _client(["print(6 * 7)"], timeout=60, drop_reads=1)
    client.execute()
    assert client.nb.cells[0].outputs[0]["text"].strip() == "42"
    assert any("jupyter/nbclient#312" in ln and "reading again" in ln for ln in said), said


def test_reply_that_never_comes_is_a_named_stall(said: list[str]) -> None:
    client = _client(["print(1)"], timeout=600, drop_reads=10_000)
    with pytest.raises(CellTimeoutError, match=r"stalled: the kernel finished this cell .*nbclient#312"):
        client.execute()


def test_tqdm_text_is_echoed(said: list[str]) -> None:
    client = _client(["from tqdm.auto import tqdm\nfor _ in tqdm(range(5), desc='demo'): pass"], timeout=60)
    client.execute()
    assert any("demo" in ln and "5/5 [" in ln for ln in said), said


MINI_CONFIG = """title: mini
only_build_toc_files: true
execute:
  execute_notebooks: cache
  timeout: 60
repository:
  url: https://github.com/example/mini
  path_to_book: ""
  branch: main
html:
  use_repository_button: true
sphinx:
  local_extensions:
    site_fixes: {ext}
  config:
    nb_execution_raise_on_error: true
    course_exec_poll: 1
    course_exec_echo: 0
"""


def _notebook(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}")] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


def test_build_says_what_it_executes_and_reports_the_course_error(tmp_path: Path) -> None:
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    (tmp_path / "_config.yml").write_text(MINI_CONFIG.format(ext=json.dumps(str(ROOT / "book" / "_ext"))))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: a_ok\nchapters:\n- file: b_fails\n")
    _notebook(tmp_path / "a_ok.ipynb", [
        "import time\nfrom tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='demo'):\n    time.sleep(0.5)",
        "time.sleep(2.5)",
        # while the build runs, _build/building.json names its live process (conftest.py)
        "import json, os\nos.kill(json.load(open('_build/building.json'))['pid'], 0)",
    ])
    _notebook(tmp_path / "b_fails.ipynb", ["x = 1", "raise ValueError('a course bug')"])
    proc = subprocess.run([jb, "build", "--all", str(tmp_path)], capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log
    assert "executing a_ok.ipynb (notebook 1 of 2" in log, log
    assert "executed a_ok.ipynb in" in log, log
    assert "demo: 100% 3/3 [" in log, log
    assert "a_ok.ipynb: cell 2 ('time.sleep(2.5)') still running after" in log, log
    assert "executing b_fails.ipynb (notebook 2 of 2" in log, log
    assert "A chapter failed to execute (an error of the course, not of Sphinx)" in log, log
    assert "a course bug" in log and "https://github.com/example/mini/issues" in log, log
    assert "sphinx-doc/sphinx/issues" not in log, log
    times = json.loads((tmp_path / "_build" / "execution_times.json").read_text())
    assert set(times) == {"a_ok.ipynb"} and times["a_ok.ipynb"] >= 4.0, times
    assert not (tmp_path / "_build" / "building.json").exists(), "a failed build left its lock"


def test_build_executes_two_chapters_at_a_time_into_the_cache(tmp_path: Path) -> None:
    """course_exec_workers = 2 (the default): the chapters run side by side (their sleeps
    overlap), each once; Sphinx then reads each from the cache; each is stamped."""
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    (tmp_path / "_config.yml").write_text(MINI_CONFIG.format(ext=json.dumps(str(ROOT / "book" / "_ext"))))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: a\nchapters:\n- file: b\n- file: c\n")
    for name in "abc":
        _notebook(tmp_path / f"{name}.ipynb", [
            "import json, time\nt0 = time.time()\ntime.sleep(3)",
            f"json.dump([t0, time.time()], open('{name}.json', 'w'))\nprint('ran {name}')",
        ])
    proc = subprocess.run([jb, "build", "--all", str(tmp_path)], capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "executing 3 notebooks, 2 at a time (course_exec_workers), longest first" in log, log
    for name in "abc":
        assert log.count(f"executing {name}.ipynb (notebook") == 1, log
        assert f"{name}.ipynb: Using cached notebook" in log, log
        assert f"ran {name}" in (tmp_path / "_build" / "html" / f"{name}.html").read_text()
        # the executed copy that the slides and the browser test read has its outputs
        executed = nbformat.read(tmp_path / "_build" / "jupyter_execute" / f"{name}.ipynb", as_version=4)
        assert f"ran {name}" in executed.cells[2].outputs[0]["text"], executed.cells[2]
    spans = [json.loads((tmp_path / f"{n}.json").read_text()) for n in "abc"]
    overlaps = [max(0.0, min(p[1], q[1]) - max(p[0], q[0])) for p, q in
                ((spans[0], spans[1]), (spans[0], spans[2]), (spans[1], spans[2]))]
    assert max(overlaps) > 1.0, spans  # two of them slept at the same time
    stamps = json.loads((tmp_path / "_build" / "executed.json").read_text())
    assert set(stamps) == {"a.ipynb", "b.ipynb", "c.ipynb"}, stamps


def _root_conftest():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Config:
    class pluginmanager:  # noqa: N801
        @staticmethod
        def get_plugin(name: str) -> None:
            return None


def test_tests_beside_a_build_wait_for_its_stamp_and_not_for_a_dead_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest.py: a chapter not yet stamped waits while a build runs; skipped once stamped."""
    conf = _root_conftest()
    monkeypatch.setattr(conf, "STAMPS", tmp_path / "executed.json")
    monkeypatch.setattr(conf, "BUILDING", tmp_path / "building.json")
    monkeypatch.setattr(conf, "POLL_S", 0.2)
    nb = ROOT / "book" / "01_weight_prediction.ipynb"
    mine = guard.fingerprint(guard.code_of(json.loads(nb.read_text(encoding="utf8"))))
    name = "book/01_weight_prediction.ipynb"
    # no build and no stamp: execute it
    assert conf._verdict(name, nb, _Config) is None
    # a build that died (no such process) is not waited for
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    conf.BUILDING.write_text(json.dumps({"pid": int(dead)}))
    assert conf._verdict(name, nb, _Config) is None
    # a live build: wait until it stamps the chapter, then skip it
    builder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        conf.BUILDING.write_text(json.dumps({"pid": builder.pid}))
        conf.STAMPS.write_text(json.dumps({name: {"fingerprint": "another", "at": "x", "seconds": 1}}))

        def stamp_later() -> None:
            time.sleep(1.0)
            conf.STAMPS.write_text(json.dumps({name: {"fingerprint": mine, "at": "then", "seconds": 2}}))

        thread = threading.Thread(target=stamp_later)
        t0 = time.monotonic()
        thread.start()
        reason = conf._verdict(name, nb, _Config)
        thread.join()
        assert reason and "executed cleanly by the book build at then" in reason, reason
        assert time.monotonic() - t0 >= 1.0
        # the build ends without stamping another chapter: that one is executed
        other = ROOT / "book" / "02_task_hardness.ipynb"
        builder.kill()
        builder.wait()
        assert conf._verdict("book/02_task_hardness.ipynb", other, _Config) is None
    finally:
        builder.kill()
