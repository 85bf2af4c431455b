"""Plain values across the sandbox boundary of ``build.py grade`` (JSON only, never pickle).

The grader (trusted, outside the sandbox) sends a student's function its test inputs and gets
back what it returned or raised; both directions use :func:`encode` / :func:`decode`. Only
``None``, ``bool``, ``int``, ``float`` (``nan`` and ``inf`` included), ``str``, lists, tuples,
dicts with string keys, NumPy arrays and scalars of a numeric or boolean dtype, PyTorch
tensors (as arrays) and dtypes cross; anything else is refused with ``TypeError`` (on the student's side:
"returned an object of type X"). :func:`decode` builds nothing but these types and checks
sizes, so a reply from the sandbox can do no more than any other wrong answer.
"""

from __future__ import annotations

import base64
import json
import math

import numpy as np

MAX_ELEMENTS = 10_000_000  # per array; a reply is also capped in bytes by the grader
MAX_DEPTH = 20
_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64"}


def _array(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    if a.dtype.name not in _DTYPES:
        raise TypeError(f"an array of dtype {a.dtype} (only numeric or boolean arrays are graded)")
    return {"__ndarray__": base64.b64encode(a.tobytes()).decode("ascii"), "dtype": a.dtype.name,
            "shape": list(a.shape)}


def _enc(x, depth: int):
    if depth > MAX_DEPTH:
        raise TypeError("a value nested more than 20 levels deep")
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int) and not isinstance(x, bool):
        return x if abs(x) < 2**63 else {"__bigint__": str(x)}
    if isinstance(x, float):
        return x if math.isfinite(x) else {"__float__": repr(x)}
    if isinstance(x, np.ndarray):
        return _array(x)
    if isinstance(x, np.generic):
        return {"__npscalar__": _array(np.asarray(x))}
    if type(x).__module__.startswith("torch") and type(x).__name__ in ("Tensor", "Parameter"):
        return {"__tensor__": _array(x.detach().cpu().numpy())}
    if type(x).__module__ == "torch" and type(x).__name__ == "dtype":
        return {"__torch_dtype__": str(x).removeprefix("torch.")}
    if isinstance(x, tuple):
        return {"__tuple__": [_enc(v, depth + 1) for v in x]}
    if isinstance(x, list):
        return [_enc(v, depth + 1) for v in x]
    if isinstance(x, dict) and all(isinstance(k, str) for k in x):
        return {"__dict__": {k: _enc(v, depth + 1) for k, v in x.items()}}
    raise TypeError(f"an object of type {type(x).__name__}")


def encode(x) -> str:
    """JSON text of a plain value (``TypeError`` for anything else)."""
    return json.dumps(_enc(x, 0), allow_nan=False)


def _dec(x, depth: int, torch_ok: bool):
    if depth > MAX_DEPTH:
        raise ValueError("nested too deep")
    if x is None or isinstance(x, (bool, str, int, float)):
        return x
    if isinstance(x, list):
        return [_dec(v, depth + 1, torch_ok) for v in x]
    if not isinstance(x, dict) or len(x) not in (1, 3):
        raise ValueError("not an encoded value")
    if "__ndarray__" in x:
        if set(x) != {"__ndarray__", "dtype", "shape"} or x["dtype"] not in _DTYPES:
            raise ValueError("bad array")
        shape = x["shape"]
        if not (isinstance(shape, list) and len(shape) <= 8
                and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_ELEMENTS
                        for s in shape)):
            raise ValueError("bad array shape")
        if math.prod(shape) > MAX_ELEMENTS:
            raise ValueError(f"an array of more than {MAX_ELEMENTS} elements")
        data = base64.b64decode(x["__ndarray__"], validate=True)
        return np.frombuffer(data, dtype=np.dtype(x["dtype"])).reshape(shape).copy()
    (key, value), = x.items()
    if key == "__tuple__" and isinstance(value, list):
        return tuple(_dec(v, depth + 1, torch_ok) for v in value)
    if key == "__dict__" and isinstance(value, dict):
        return {str(k): _dec(v, depth + 1, torch_ok) for k, v in value.items()}
    if key == "__float__" and value in ("nan", "inf", "-inf"):
        return float(value)
    if key == "__bigint__" and isinstance(value, str) and len(value) < 5000:
        return int(value)
    if key == "__npscalar__":
        arr = _dec(value, depth + 1, torch_ok)
        if not isinstance(arr, np.ndarray) or arr.shape != ():
            raise ValueError("bad scalar")
        return arr[()]
    if key == "__torch_dtype__" and value in _DTYPES:
        if not torch_ok:
            return value
        import torch

        return getattr(torch, value)
    if key == "__tensor__":
        arr = _dec(value, depth + 1, torch_ok)
        if not isinstance(arr, np.ndarray):
            raise ValueError("bad tensor")
        if torch_ok:
            import torch

            return torch.from_numpy(arr)
        return arr
    raise ValueError(f"unknown tag {key!r}")


def decode(text: str | bytes, torch_ok: bool = True):
    """The value :func:`encode` wrote (``ValueError`` for anything that is not such a value)."""
    return _dec(json.loads(text), 0, torch_ok)
