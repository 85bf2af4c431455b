"""Reference functions that a question forbids, asked of the grader (inside the sandbox only).

While ``build.py grade`` runs a submission, the sandbox's copy of ``tts_lib`` has no code for
the functions an assignment forbids: each is a stub that sends its arguments to the grader,
outside the sandbox, through the driver's socket. The grader computes the value only where the
question being tested allows it (while the student's own cells run, every call is allowed:
checking answers with ``tts_lib`` is encouraged), and otherwise answers with the refusal
that the stub raises as ``RuntimeError``.
"""

from __future__ import annotations

import json
import os
import socket

import _grading_codec as codec


def ask(qualname: str, arguments: dict):
    """The grader's value of ``qualname(**arguments)``, or ``RuntimeError`` with its refusal."""
    path = os.environ.get("TTS_GRADING_SOCKET", "")
    try:
        payload = codec.encode(arguments)
    except TypeError as err:
        raise RuntimeError(f"{qualname} cannot be evaluated while grading with {err} as an argument") from None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(600)
        s.connect(path)
        s.sendall((json.dumps({"ref": qualname, "args": payload}) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data or b"{}")
    if "value" in reply:
        return codec.decode(reply["value"])
    raise RuntimeError(reply.get("refused", f"{qualname} is not available while grading"))
