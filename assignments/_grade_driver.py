"""Run one submission inside the sandbox (started by ``build.py grade``; not for direct use).

This process and the student's kernel are *untrusted*: they only evaluate the student's
functions on inputs the grader sends and send back plain values. No test, no expected value
and no score ever exists in the sandbox; the grader (outside) runs the tests and decides.

Protocol, one JSON line at a time (this process's own stdin and stdout, which the kernel does
not inherit):

1. read ``{"notebook": <notebook JSON text>}``; set the resource limits given in ``argv[1]``;
   run the student's code cells in a fresh kernel (errors recorded, execution goes on; the
   student's ``grader.check`` cells are dropped);
2. print ``READY {"cell_errors": [...], "error": ...}``;
3. for each ``{"call": NAME, "args": CODEC_TEXT, "timeout": SECONDS}`` evaluate
   ``NAME(*args, **kwargs)`` in the kernel and print ``REPLY {...}`` with what it returned or
   raised (``_grading_codec``); stop at ``{"done": true}`` or end of input.

While a cell runs, the sandbox's ``tts_lib`` stubs of forbidden reference functions
(``_grading_client``) connect to this process's socket; it forwards each request to the grader
as ``ASK {...}`` and hands back the grader's ``{"answer": {...}}``.

Usage: ``python _grade_driver.py LIMITS_JSON``.
"""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
MIME = "text/x-tts-grading"
MAX_REPLY = 64 * 2**20
CHECK_CELL = re.compile(r"^\s*(grader\.check\([^)]*\)\s*)+$")
HELPER = """\
def __tts_grading_call(__name, __args):
    import builtins as __b
    import json as __json
    import sys as __sys
    from IPython.display import display as __display
    if {here!r} not in __sys.path:
        __sys.path.insert(0, {here!r})
    import _grading_codec as __codec
    def __raised(err):
        kinds = [k.__name__ for k in type(err).__mro__ if getattr(__b, k.__name__, None) is k]
        return {{"raised": {{"types": kinds, "name": type(err).__name__, "message": str(err)[:2000]}}}}
    try:
        __a, __k = __codec.decode(__args)
    except Exception as err:
        __out = {{"error": f"bad request: {{err}}"}}
    else:
        __f = globals().get(__name)
        if __f is None:
            __out = {{"missing": __name}}
        elif not callable(__f):
            __out = {{"raised": {{"types": ["TypeError"], "name": "TypeError",
                                 "message": f"{{__name}} is not a function"}}}}
        else:
            try:
                __v = __f(*__a, **__k)
            except (KeyboardInterrupt, SystemExit, Exception) as err:
                __out = __raised(err)
            else:
                try:
                    __out = {{"value": __json.loads(__codec.encode(__v))}}
                except Exception as err:
                    __out = {{"raised": {{"types": ["TypeError"], "name": "TypeError",
                                         "message": f"{{__name}} returned {{err}}, not a number or array"}}}}
    __display({{{mime!r}: __json.dumps(__out)}}, raw=True)
"""


def _limits(spec: dict) -> None:
    """Hard resource limits for this process and everything it starts (they cannot be raised)."""
    for name, key in (("RLIMIT_AS", "memory"), ("RLIMIT_NPROC", "processes"), ("RLIMIT_FSIZE", "file_size")):
        if spec.get(key):
            resource.setrlimit(getattr(resource, name), (int(spec[key]), int(spec[key])))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _errors(cells: list) -> list[dict]:
    out = []
    for cell in cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                out.append({"cell": int(cell.metadata.get("otter_sandbox_index", -1)), "ename": o.get("ename", ""),
                            "evalue": str(o.get("evalue", ""))[:500]})
    return out


def main() -> None:
    # private copies of stdin/stdout (close-on-exec); the kernel gets /dev/null in their place
    rx = os.fdopen(os.dup(0), "r", encoding="utf-8")
    tx = os.fdopen(os.dup(1), "w", encoding="utf-8")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)

    def send(tag: str, obj: dict) -> None:
        tx.write(f"{tag} {json.dumps(obj)}\n")
        tx.flush()

    io = threading.Lock()  # one conversation with the grader at a time
    state = {"busy": True}  # a cell is running: the grader is listening for ASK

    def handle(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(600)
            data = b""
            while not data.endswith(b"\n") and len(data) < MAX_REPLY:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
            try:
                request = json.loads(data)
                ok = isinstance(request, dict) and isinstance(request.get("ref"), str) \
                    and isinstance(request.get("args"), str)
            except ValueError:
                ok = False
            with io:
                if not ok:
                    reply = {"refused": "a malformed request"}
                elif not state["busy"]:
                    reply = {"refused": "no cell is running"}
                else:
                    send("ASK", {"ref": request["ref"], "args": request["args"]})
                    try:
                        reply = json.loads(rx.readline()).get("answer", {})
                    except (ValueError, AttributeError):
                        reply = {"refused": "no answer from the grader"}
            conn.sendall(json.dumps(reply).encode() + b"\n")

    def serve(server: socket.socket) -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    folder = tempfile.mkdtemp(prefix="tts-grading-")
    os.environ["TTS_GRADING_SOCKET"] = os.path.join(folder, "socket")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(os.environ["TTS_GRADING_SOCKET"])
    server.listen(16)
    threading.Thread(target=serve, args=(server,), daemon=True).start()

    _limits(json.loads(sys.argv[1]))
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    header = json.loads(rx.readline())
    nb = nbformat.reads(header["notebook"], as_version=4)
    cells = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or CHECK_CELL.match(cell.source or ""):
            continue
        cell.metadata["otter_sandbox_index"] = i
        cells.append(cell)
    # `otter` here is the runtime's stand-in (_otter_standin.py): its checks do nothing
    helper = nbformat.v4.new_code_cell(HELPER.format(here=HERE, mime=MIME))
    nb.cells = [*cells, helper]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(nb, timeout=max(1, int(float(header.get("cell_timeout", 600)))), kernel_name="python3",
                            allow_errors=True, interrupt_on_timeout=True,
                            resources={"metadata": {"path": os.getcwd()}})
    error = None
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            try:
                client.execute_cell(cell, index)
            except DeadKernelError:
                error = "the kernel died while running the notebook"
                break
            except Exception as err:  # a cell timed out and could not be interrupted, ...
                error = f"{type(err).__name__} while running the notebook"
                break
        with io:
            state["busy"] = False
            send("READY", {"cell_errors": _errors(cells), "error": error})
        while True:
            with io:
                line = rx.readline()
                request = json.loads(line) if line.strip() else {"done": True}
                state["busy"] = not request.get("done")
            if request.get("done"):
                break
            if error is not None:
                with io:
                    state["busy"] = False
                    send("REPLY", {"error": error})
                continue
            call = nbformat.v4.new_code_cell(f"__tts_grading_call({request['call']!r}, {request['args']!r})")
            nb.cells.append(call)
            client.timeout = max(1, int(float(request.get("timeout", 60))))
            try:
                client.execute_cell(call, len(nb.cells) - 1)
            except DeadKernelError:
                error = "the kernel died"
            except Exception as err:
                error = f"{type(err).__name__}"
            with io:
                state["busy"] = False
            if error is not None:
                send("REPLY", {"error": error})
                continue
            payload = [o["data"][MIME] for o in call.outputs
                       if o.get("output_type") == "display_data" and MIME in o.get("data", {})]
            timed_out = any(o.get("output_type") == "error" and o.get("ename") == "KeyboardInterrupt"
                            for o in call.outputs) and not payload
            if timed_out:
                send("REPLY", {"error": f"no answer within {client.timeout:g} s"})
            elif not payload or len(payload[-1]) > MAX_REPLY:
                send("REPLY", {"error": "no readable answer"})
            else:
                try:
                    send("REPLY", json.loads(payload[-1]))
                except ValueError:
                    send("REPLY", {"error": "no readable answer"})
            call.outputs = []


if __name__ == "__main__":
    main()
