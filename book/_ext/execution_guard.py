"""How the book build executes the chapters: never failing for being slow, saying what it does.

Loaded by ``site_fixes`` (``sphinx.local_extensions``); the settings live in ``_config.yml``.

* **A slow cell is not an error.** ``execute.timeout`` is a generous per-cell limit (the
  slowest cell takes about 20 s on an idle core, and a loaded 2-core laptop can be ten
  times slower). nbclient waits for a cell's execute reply in one blocking read of that
  length; here the read is cut into slices of ``course_exec_poll`` seconds, and between
  slices the build prints that the cell is still running, so a long cell is visible.
* **A stall is caught and named.** The known stall (jupyter/nbclient#312) is a client
  that missed the wake-up of its read: the kernel has finished the cell (its ``idle``
  status arrived) but the reply is never read. Each new slice reads the socket again,
  which recovers it; the build says so. A kernel that has been idle for
  ``course_exec_stall`` seconds without a reply fails the cell at once with a message
  that says it is a stall, not a slow cell.
* **Progress.** A line per chapter when it starts executing (its place in the book and
  its expected time: the previous run's in ``_build/execution_times.json``, else the
  measured table ``execution_times.json`` beside this file) and when it ends; the text of
  a ``tqdm`` bar drawn in the notebook (a widget) is echoed to the build log, at most every
  ``course_exec_echo`` seconds and when it completes.
* **Two chapters at a time.** Before Sphinx reads the pages one by one, the chapters it
  will have to execute run ``course_exec_workers`` at a time (default 2, at most the
  number of cores), longest first, each in its own process with the guard above, into
  myst-nb's execution cache; Sphinx then finds each one cached. A chapter that fails there
  is executed again when Sphinx reads it, so that its error is reported as below.
* **One execution serves the tests too.** After a chapter executes cleanly the build
  writes its fingerprint to ``_build/executed.json`` (the notebook's code, the library
  and checkpoints, the installed packages, the Python): ``book/conftest.py`` then lets
  ``python -m pytest`` skip nbval's second execution of a chapter whose fingerprint still
  matches (CI runs the README's test command beside the build: a chapter not yet stamped
  is waited for while ``_build/building.json`` names a running build).
* **The course's errors are the course's.** A chapter that fails to execute stops the
  build with a Sphinx error naming the notebook, the cell and this repository's issue
  tracker, instead of Sphinx's "please report this to sphinx-doc" text.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import importlib.metadata
import json
import os
import re
import site
import sys
import time
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.errors import SphinxError
from sphinx.util import logging

LOG = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TABLE = HERE / "execution_times.json"
#: What a chapter's execution depends on besides its own code (hashed into its fingerprint).
INPUTS = ("tts_lib/**/*.py", "book/checkpoints/**/*", "book/*.bib")

#: Module settings, filled from the Sphinx config at ``builder-inited`` (defaults for tests).
SETTINGS: dict[str, Any] = {"poll": 30.0, "stall": 120.0, "echo": 15.0, "say": None}
#: The notebook being executed in this process (the build's, or one of its workers').
CURRENT: dict[str, Any] = {"name": None}
TQDM_STATS = re.compile(r"^\s*\d[\d.]*[kMG]?(/\d[\d.]*[kMG]?)?\s*\[")


class ChapterExecutionError(SphinxError):
    """A chapter failed to execute: the course's error, reported to the course."""

    category = "A chapter failed to execute (an error of the course, not of Sphinx)"


def _say(text: str) -> None:
    """One line in the build log (Sphinx's status stream; stderr in tests)."""
    say = SETTINGS["say"]
    if say is not None:
        say(text)
    else:
        print(text, file=sys.stderr, flush=True)


def _first_line(cell: Any) -> str:
    return next((ln for ln in cell.source.splitlines() if ln.strip()), "")[:60]


# --------------------------------------------------------------------------- nbclient


class _TqdmEcho:
    """Echo the text of tqdm's notebook bars (HTML widgets beside a progress bar)."""

    def __init__(self) -> None:
        self.left: dict[str, str] = {}
        self.last = 0.0

    def see(self, msg: dict[str, Any]) -> None:
        if msg["msg_type"] not in ("comm_open", "comm_msg"):
            return
        data = msg["content"].get("data") or {}
        state = data.get("state") or {}
        value = state.get("value")
        if not isinstance(value, str) or not value.strip():
            return
        text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", value)).replace("\u2007", " ").split())
        if not TQDM_STATS.match(text):
            self.left["last"] = text  # the bar's left label: "train LSA:  40%"
            return
        count = re.match(r"([\d.]+)(?:/([\d.]+))?", text)
        done = bool(count and count.group(2) and count.group(1) == count.group(2))
        now = time.monotonic()
        if done or now - self.last >= SETTINGS["echo"]:
            self.last = now
            name = CURRENT["name"] or "notebook"
            _say(f"    {name}: {self.left.get('last', '')} {text}".rstrip())


def patch_nbclient() -> None:
    """Slice nbclient's execute-reply wait, name slow cells and stalls, echo tqdm bars."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError

    if getattr(NotebookClient, "_course_guard", False):
        return
    original_execute_cell = NotebookClient.async_execute_cell
    original_process = NotebookClient.process_message
    original_get_timeout = NotebookClient._get_timeout
    original_handle_timeout = NotebookClient._async_handle_timeout

    async def async_execute_cell(self: Any, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
        self._course_cell = (cell_index, cell)
        self._course_t0 = time.monotonic()
        self._course_idle_at = None
        self._course_last_timeout = 0.0
        self._course_cap = original_get_timeout(self, cell)
        if not hasattr(self, "_course_tqdm"):
            self._course_tqdm = _TqdmEcho()
        try:
            return await original_execute_cell(self, cell, cell_index, *args, **kwargs)
        except CellTimeoutError as exc:
            first = _first_line(cell)
            raise CellTimeoutError(
                f"cell {cell_index} (0-based, markdown cells counted; id {cell.get('id', '?')}, "
                f"first line {first!r}) {exc}"
            ) from None

    def process_message(self: Any, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
            self._course_idle_at = time.monotonic()
        tq = getattr(self, "_course_tqdm", None)
        if tq is not None:
            tq.see(msg)
        return original_process(self, msg, cell, cell_index)

    def _get_timeout(self: Any, cell: Any) -> int | None:
        cap = original_get_timeout(self, cell)
        if cell is None or cap is None:
            return cap
        return min(cap, SETTINGS["poll"])  # one slice of the wait for the execute reply

    async def _async_handle_timeout(self: Any, timeout: int, cell: Any = None) -> Any:
        now = time.monotonic()
        if now - getattr(self, "_course_last_timeout", 0.0) < 1.0:
            await asyncio.sleep(1.0)  # the slice's deadline has passed: read once a second
            now = time.monotonic()
        self._course_last_timeout = now
        index, _ = getattr(self, "_course_cell", (None, cell))
        elapsed = now - getattr(self, "_course_t0", now)
        cap = getattr(self, "_course_cap", None)
        idle_at = getattr(self, "_course_idle_at", None)
        where = f"{CURRENT['name'] or 'notebook'}: cell {index} ({_first_line(cell)!r})"
        if idle_at is not None:
            idle = now - idle_at
            if idle >= SETTINGS["stall"]:
                raise CellTimeoutError(
                    f"stalled: the kernel finished this cell {idle:.0f} s ago (its 'idle' status "
                    f"arrived) but nbclient never received the execute reply, after reading "
                    f"again every {SETTINGS['poll']:.0f} s. This is the client stall of "
                    "jupyter/nbclient#312, not a slow cell: run the build again, and report it "
                    "with the cell named here."
                )
            _say(f"    {where}: the kernel finished {idle:.0f} s ago and the reply was not "
                 "read (the stall of jupyter/nbclient#312): reading again")
            return None
        if cap is not None and elapsed >= cap:
            return await original_handle_timeout(self, int(cap), cell)
        _say(f"    {where} still running after {elapsed:.0f} s"
             + (f" (per-cell limit {cap} s, _config.yml execute.timeout)" if cap else ""))
        return None

    NotebookClient.async_execute_cell = async_execute_cell  # type: ignore[method-assign]
    NotebookClient.process_message = process_message  # type: ignore[method-assign]
    NotebookClient._get_timeout = _get_timeout  # type: ignore[method-assign]
    NotebookClient._async_handle_timeout = _async_handle_timeout  # type: ignore[method-assign]
    NotebookClient._course_guard = True  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- myst-nb


def _load_times(path: Path) -> dict[str, float]:
    """{notebook: seconds} from a times file (keys starting with "_" are notes)."""
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text(encoding="utf8")).items()
                if not str(k).startswith("_")}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def _expected(name: str, store: Path) -> str:
    last, table = _load_times(store).get(name), _load_times(TABLE).get(name)
    try:
        where = json.loads(TABLE.read_text(encoding="utf8")).get("_measured", "")
    except (OSError, ValueError, AttributeError):
        where = ""
    if last is not None:
        return f"took {last:.0f} s last time"
    if table is not None:
        return f"about {table:.0f} s measured ({where})"
    return "no earlier time known"


def code_of(nb: Any) -> str:
    """The code a notebook runs (code cells' sources, in order): what nbval executes."""
    cells = nb["cells"] if isinstance(nb, dict) else nb.cells
    return "\n\x00".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def fingerprint(code: str) -> str:
    """Hash of a chapter's code and of everything else its execution depends on."""
    h = hashlib.sha256(code.encode())
    for pattern in INPUTS:
        for path in sorted(ROOT.glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(path.relative_to(ROOT).as_posix().encode() + b"\x00" + path.read_bytes())
    # the environment's own packages (not whatever sys.path happens to hold, e.g. the cwd)
    dists = sorted(f"{d.metadata['Name']}=={d.version}"
                   for d in importlib.metadata.distributions(path=site.getsitepackages()))
    h.update("\n".join(dists).encode() + sys.prefix.encode())
    return h.hexdigest()


def _starting(env: Any, doc: str | None, name: str, store: Path, timeout: Any) -> str:
    """The line that says a chapter starts: its place in the book and its expected time."""
    docs = sorted(d for d in env.found_docs if str(env.doc2path(d)).endswith(".ipynb"))
    place = f"notebook {docs.index(doc) + 1} of {len(docs)}, " if doc in docs else ""
    return f"executing {name} ({place}{_expected(name, store)}; cells may take up to {timeout} s each)"


def _record(name: str, seconds: float, stamp: str, store: Path) -> None:
    """A clean execution: its line, its time (``store``) and its stamp (``executed.json``)."""
    _say(f"executed {name} in {seconds:.0f} s")
    times = _load_times(store)
    times[name] = round(seconds, 1)
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text(json.dumps(times, indent=1, sort_keys=True), encoding="utf8")
    done = store.parent / "executed.json"
    try:
        stamps = json.loads(done.read_text(encoding="utf8"))
    except (OSError, ValueError):
        stamps = {}
    stamps[name] = {"fingerprint": stamp, "seconds": round(seconds, 1),
                    "python": sys.executable, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    done.write_text(json.dumps(stamps, indent=1, sort_keys=True), encoding="utf8")


def patch_myst_nb(app: Sphinx) -> None:
    """A line when a chapter starts and ends executing; course errors as Sphinx errors."""
    from myst_nb.core.execute import cache, direct
    from myst_nb.core.execute.base import ExecutionError

    if getattr(cache, "_course_guard", False):
        return
    store = Path(app.outdir).parent / "execution_times.json"
    repo = (app.config.html_theme_options or {}).get("repository_url", "").rstrip("/")

    def timed(run: Any) -> Any:
        def single_nb_execution(nb: Any, *args: Any, **kwargs: Any) -> Any:
            name = CURRENT["name"] or "notebook"
            _say(_starting(app.env, CURRENT.get("doc"), name, store, kwargs.get("timeout")))
            stamp = fingerprint(code_of(nb))
            result = run(nb, *args, **kwargs)
            if result.err is None:
                _record(name, result.time, stamp, store)
            return result

        return single_nb_execution

    def named(start: Any) -> Any:
        def start_client(self: Any) -> Any:
            path = Path(self.path) if self.path else None
            try:
                rel = path.resolve().relative_to(Path(app.srcdir).resolve()).as_posix() if path else None
            except ValueError:
                rel = path.name if path else None
            CURRENT["name"] = rel
            CURRENT["doc"] = rel.rsplit(".", 1)[0] if rel else None
            try:
                return start(self)
            except ExecutionError as exc:
                cause = exc.__cause__
                detail = "\n".join(str(cause).strip().splitlines()[:25]) if cause else ""
                where = f" Report it at {repo}/issues with this message." if repo else ""
                raise ChapterExecutionError(
                    f"{rel or exc}: {type(cause).__name__ if cause else 'error'}\n{detail}\n"
                    f"(raised while the build executed the notebook.{where})"
                ) from exc
            finally:
                CURRENT["name"] = CURRENT["doc"] = None

        return start_client

    for module, client in ((cache, cache.NotebookClientCache), (direct, direct.NotebookClientDirect)):
        module.single_nb_execution = timed(module.single_nb_execution)
        client.start_client = named(client.start_client)
    cache._course_guard = True


READ: list[str] = []  # the notebooks Sphinx reads in this build (env-before-read-docs)


def _note_read(app: Sphinx, env: Any, docnames: list[str]) -> None:
    READ[:] = [d for d in docnames if str(env.doc2path(d)).endswith(".ipynb")]


def _execute_one(path: str, name: str, header: str, timeout: int | None, allow_errors: bool,
                 settings: dict[str, float]) -> tuple[Any, float, str | None]:
    """In a worker process: execute one notebook as myst-nb's cache mode does, with this
    module's guard. Returns (executed notebook or None, seconds, error or None)."""
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    SETTINGS.update(settings)
    SETTINGS["say"] = None  # lines go to stderr, the build log
    CURRENT["name"] = name
    patch_nbclient()
    _say(header)
    nb = nbformat.read(path, as_version=4)
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout,
                                 allow_errors=allow_errors, meta_override=True)
    if result.err is not None:
        return None, result.time, f"{type(result.err).__name__}: {str(result.err).strip()[:200]}"
    return result.nb, result.time, None


def _execute_ahead(app: Sphinx, env: Any, docnames: list[str]) -> None:
    """Execute the chapters this build has to execute, ``course_exec_workers`` at a time
    (longest first), into the execution cache, before Sphinx reads them one by one.

    Sphinx then finds each chapter cached; one that failed here is executed again as it is
    read, so that its error is reported as before (ChapterExecutionError).
    """
    workers = min(int(app.config.course_exec_workers), os.cpu_count() or 1)
    config = getattr(env, "mystnb_config", None)  # myst-nb's settings, resolved at builder-inited
    if workers < 2 or config is None or config.execution_mode != "cache" or config.execution_in_temp:
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(config.execution_cache_path)
    src = Path(app.srcdir).resolve()
    store = Path(app.outdir).parent / "execution_times.json"
    todo = []
    for doc in READ:  # the notebooks among docnames (_note_read runs first)
        path = Path(env.doc2path(doc)).resolve()
        if any(path.match(p) for p in config.execution_excludepatterns):
            continue
        nb = nbformat.read(path, as_version=4)
        try:
            cache.match_cache_notebook(nb)
            continue  # cached already
        except KeyError:
            pass
        todo.append((doc, path, path.relative_to(src).as_posix(), fingerprint(code_of(nb))))
    if len(todo) < 2:
        return  # nothing to run side by side: myst-nb executes it as it reads it
    last, table = _load_times(store), _load_times(TABLE)
    todo.sort(key=lambda t: -last.get(t[2], table.get(t[2], 60.0)))
    timeout, allow = config.execution_timeout, bool(config.execution_allow_errors)
    settings = {k: SETTINGS[k] for k in ("poll", "stall", "echo")}
    workers = min(workers, len(todo))
    _say(f"executing {len(todo)} notebooks, {workers} at a time (course_exec_workers), longest first")
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = {}
        for doc, path, name, stamp in todo:
            header = _starting(env, doc, name, store, timeout)
            jobs[pool.submit(_execute_one, str(path), name, header, timeout, allow, settings)] = (
                name, path, stamp)
        for job in as_completed(jobs):
            name, path, stamp = jobs[job]
            try:
                executed, seconds, error = job.result()
            except Exception as exc:  # a worker that died: the serial path reports it
                executed, seconds, error = None, 0.0, f"{type(exc).__name__}: {exc}"
            if error is not None:
                _say(f"{name} failed ({error.splitlines()[0]}); it is executed again when the "
                     "build reads it, to report the error")
                continue
            cache.cache_notebook_bundle(
                CacheBundleIn(executed, str(path), data={"execution_seconds": seconds}),
                check_validity=False, overwrite=True)
            _record(name, seconds, stamp, store)


def _outputs_back(app: Sphinx, env: Any) -> None:
    """Give ``_build/jupyter_execute/*.ipynb`` their outputs back.

    myst-nb 1.4 writes there the notebook as read, not as executed: a chapter taken from
    the execution cache (every chapter, since they are executed ahead) would have no
    outputs, and the slides, the browser test and the PDF test read them.
    """
    config = getattr(env, "mystnb_config", None)
    if config is None or config.execution_mode != "cache" or not READ:
        return
    import nbformat
    from jupyter_cache import get_cache

    cache = get_cache(config.execution_cache_path)
    for doc in READ:
        target = Path(config.output_folder) / f"{doc}.ipynb"
        if not target.is_file():
            continue
        nb = nbformat.read(target, as_version=4)
        if any(c.get("outputs") for c in nb.cells if c.cell_type == "code"):
            continue
        try:
            _, merged = cache.merge_match_into_notebook(nb)
        except KeyError:  # not executed (failed, or excluded)
            continue
        target.write_text(nbformat.writes(merged), encoding="utf8")


def _building(app: Sphinx) -> Path:
    return Path(app.outdir).parent / "building.json"


def _build_started(app: Sphinx) -> None:
    """Name this build's process in ``_build/building.json`` while it runs (see conftest.py)."""
    lock = _building(app)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "builder": app.builder.name,
                                "started": time.strftime("%Y-%m-%d %H:%M:%S")}), encoding="utf8")


def _build_finished(app: Sphinx, exc: Exception | None) -> None:
    lock = _building(app)
    try:
        if json.loads(lock.read_text(encoding="utf8")).get("pid") == os.getpid():
            lock.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _configure(app: Sphinx) -> None:
    SETTINGS["poll"] = float(app.config.course_exec_poll)
    SETTINGS["stall"] = float(app.config.course_exec_stall)
    SETTINGS["echo"] = float(app.config.course_exec_echo)
    SETTINGS["say"] = LOG.info
    if SETTINGS["poll"] <= 0 or SETTINGS["stall"] <= SETTINGS["poll"]:
        raise SphinxError("_config.yml: course_exec_poll must be > 0 and course_exec_stall > course_exec_poll")
    patch_myst_nb(app)


def setup(app: Sphinx) -> None:
    app.add_config_value("course_exec_poll", 30, "env", [int, float])
    app.add_config_value("course_exec_stall", 120, "env", [int, float])
    app.add_config_value("course_exec_echo", 15, "env", [int, float])
    app.add_config_value("course_exec_workers", 2, "env", [int])
    patch_nbclient()
    app.connect("builder-inited", _configure)
    app.connect("builder-inited", _build_started)
    app.connect("build-finished", _build_finished)
    app.connect("env-before-read-docs", _note_read)
    app.connect("env-before-read-docs", _execute_ahead)
    app.connect("env-updated", _outputs_back)
