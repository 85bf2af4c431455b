"""GPT-2 checkpoints: save, load, verify.

A checkpoint is ``DIR/<stem>.pt`` (the ``state_dict``, via ``torch.save``) and
``DIR/<stem>.json``, the manifest: configs, training covariance, seed, steps, losses,
library versions, the exact command, ``sha256`` (of the ``.pt`` file) and ``digest``.

Tamper evidence: ``digest`` is one sha256 over the whole manifest (canonical JSON, sorted
keys, without ``digest`` itself), which includes the weights' ``sha256``; so an edited
configuration (``heads``, ``activation``, a relabelled ``context_len`` or ``train_cov``)
or changed weights are refused. This detects accidents and naive edits; it is not a
signature (whoever can write the files can recompute the hashes).

:func:`load_checkpoint` checks, before ``torch.load(weights_only=True)``: the manifest is
JSON with every field, the digest, the weights file is a plain name inside the manifest's
folder, its sha256; after loading: the keys and shapes match the configuration exactly
and every weight is finite. Every failure is a ``ValueError`` naming the file and the field.

Formats ``tts_lib.gpt2/1`` (the earlier model built on Hugging Face's ``GPT2Model``) and
``tts_lib.gpt2/2`` (the manifests' older field names) are no longer read: every committed
checkpoint was retrained with its manifest's command as format 3 in December 2026, and an
older manifest is refused with the command to retrain it. :func:`state_dict_from_hf` stays,
for Hugging Face state dicts.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ._checkpoint_registry import MANIFEST_SHA256
from ._checks import InputTypeError, check_device, check_dtype, check_path, check_pos_int
from .gpt2 import GPT2Regressor, GPT2RegressorConfig, num_parameters
from .gpt2_config import PRESETS, TRAIN_COVS, GPT2TrainConfig, TrainResult, config_from_dict, preset

MANIFEST_FORMAT = "tts_lib.gpt2/3"
OLD_FORMATS = ("tts_lib.gpt2/1", "tts_lib.gpt2/2")
#: largest weight a checkpoint may hold (trained weights are of order 1; 1e38 predicts NaN)
MAX_WEIGHT = 1e4
#: largest manifest file and JSON nesting read (a manifest is a few kB, nested 4 deep)
MAX_MANIFEST_BYTES = 1 << 20
MAX_JSON_DEPTH = 32
REQUIRED_FIELDS = ("format", "checkpoint", "sha256", "digest", "config", "train_cov", "seed", "train_steps")
_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}")


def checkpoint_stem(
    preset_name: str, cfg: GPT2RegressorConfig, train_cfg: GPT2TrainConfig, train_cov: str, seed: int
) -> str:
    """File stem such as ``gpt2_cpu_compact_isotropic_n20_seed0``.

    A depth or width other than the preset's adds ``_L<layers>`` / ``_W<width>``, a start
    distribution other than the default adds ``_zp<start_zero_prob>`` (``_zp1``: trained from
    ``ŵ0 = 0`` only), label noise adds ``_noise<label_noise>``, a dimension other than the
    preset's adds ``_d<dim>``, a Newton target ``_newton``, unrolled training ``_u<unroll>``.

    Defined in Chapter 7.
    """
    if not isinstance(preset_name, str) or not _STEM.fullmatch(preset_name) or ".." in preset_name:
        raise ValueError(f"`preset_name` must be a plain name (letters, digits, _ . + -), got {preset_name!r}")
    if not isinstance(cfg, GPT2RegressorConfig):
        raise InputTypeError(f"`cfg` must be a GPT2RegressorConfig, got {type(cfg).__name__}")
    if not isinstance(train_cfg, GPT2TrainConfig):
        raise InputTypeError(f"`train_cfg` must be a GPT2TrainConfig, got {type(train_cfg).__name__}")
    if not isinstance(train_cov, str) or train_cov not in TRAIN_COVS:
        raise ValueError(f"`train_cov` must be one of {TRAIN_COVS}, got {train_cov!r}")
    seed = check_pos_int(seed, "seed", minimum=0)
    stem = f"gpt2_{preset_name}_{cfg.layout}_{train_cov}_n{train_cfg.context_len}"
    if preset_name in PRESETS:
        base = PRESETS[preset_name][0]
        if cfg.layers != base.layers:
            stem += f"_L{cfg.layers}"
        if cfg.width != base.width:
            stem += f"_W{cfg.width}"
        if cfg.dim != base.dim:
            stem += f"_d{cfg.dim}"
    base_train = PRESETS[preset_name][1] if preset_name in PRESETS else GPT2TrainConfig()
    if train_cfg.target != base_train.target:
        stem += f"_{train_cfg.target}"
    if train_cfg.unroll != base_train.unroll:
        stem += f"_u{train_cfg.unroll}"
    if train_cfg.start_zero_prob != GPT2TrainConfig.start_zero_prob:
        stem += f"_zp{train_cfg.start_zero_prob:g}"
    if train_cfg.label_noise:
        stem += f"_noise{train_cfg.label_noise:g}"
    return check_stem(f"{stem}_seed{seed}")


def check_stem(stem: Any) -> str:
    """A file stem: letters, digits, ``_ . + -``, starting with a letter or digit (no path).

    Defined in Chapter 7.
    """
    if not isinstance(stem, str) or not _STEM.fullmatch(stem) or ".." in stem:
        raise ValueError(
            f"`stem` must be a plain file name (letters, digits, _ . + -; no '/', no '..'), got {stem!r}"
        )
    return stem


def _as_path(value: Any, name: str) -> Path:
    """``value`` as a Path (a str or os.PathLike without NUL bytes); a clear error otherwise."""
    if not isinstance(value, (str, os.PathLike)) or isinstance(value, bytes):
        raise InputTypeError(f"`{name}` must be a file path (str or Path), got {type(value).__name__}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text or "\x00" in text:
        raise ValueError(f"`{name}` must be a non-empty file path without NUL bytes, got {value!r}")
    return Path(text)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file.

    Defined in Chapter 7.
    """
    path = _as_path(path, "path")
    if not path.is_file():
        raise ValueError(f"`path`: no file {path}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``manifest`` without its ``digest`` field.

    Defined in Chapter 7.
    """
    if not isinstance(manifest, dict):
        raise InputTypeError(f"`manifest` must be a dict (a JSON object), got {type(manifest).__name__}")
    body = {k: v for k, v in manifest.items() if k != "digest"}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as err:
        raise ValueError(f"`manifest` must hold plain, finite JSON values ({err})") from err
    return hashlib.sha256(text.encode()).hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a checkpoint depends on.

    Defined in Chapter 7.
    """
    import numpy

    try:
        from importlib.metadata import version

        tts = version("tts_lib")
    except Exception:  # not installed as a distribution
        tts = "unknown"
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__, "tts_lib": tts}


def _loss_curve(losses: list[float], block: int = 50) -> list[float]:
    return [sum(losses[i : i + block]) / len(losses[i : i + block]) for i in range(0, len(losses), block)]


def _write(out: Path, stem: str, state: dict[str, torch.Tensor], manifest: dict[str, Any]) -> Path:
    pt = out / f"{stem}.pt"
    torch.save(state, pt)
    manifest = {"format": MANIFEST_FORMAT, "checkpoint": pt.name, "sha256": sha256_file(pt), **manifest}
    manifest["digest"] = manifest_digest(manifest)
    path = out / f"{stem}.json"
    path.write_text(json.dumps(manifest, indent=1, allow_nan=False) + "\n")
    return path


def save_checkpoint(
    model: GPT2Regressor,
    out_dir: str | Path,
    stem: str,
    *,
    train_cfg: GPT2TrainConfig,
    train_cov: str,
    result: TrainResult,
    preset_name: str | None = None,
    command: str | None = None,
) -> Path:
    """Write ``<stem>.pt`` (state_dict) and ``<stem>.json`` (manifest) into ``out_dir``.

    Returns the manifest path.

    Defined in Chapter 7.
    """
    if not isinstance(model, GPT2Regressor):
        raise InputTypeError(f"`model` must be a GPT2Regressor, got {type(model).__name__}")
    if not isinstance(train_cfg, GPT2TrainConfig):
        raise InputTypeError(f"`train_cfg` must be a GPT2TrainConfig, got {type(train_cfg).__name__}")
    if not isinstance(result, TrainResult):
        raise InputTypeError(f"`result` must be a TrainResult, got {type(result).__name__}")
    if train_cov not in TRAIN_COVS:
        raise ValueError(f"`train_cov` must be one of {TRAIN_COVS}, got {train_cov!r}")
    if not result.losses:
        raise ValueError("`result` has no losses: train at least one step before saving a checkpoint")
    for name, text in (("preset_name", preset_name), ("command", command)):
        if text is not None and not isinstance(text, str):
            raise InputTypeError(f"`{name}` must be a string or None, got {text!r}")
    if any(p.is_meta for p in model.parameters()):
        raise ValueError("`model` is on the meta device (no weights): there is nothing to save")
    out_dir = check_path(out_dir, "out_dir")
    stem = check_stem(stem)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    bad = [k for k, v in state.items() if not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"the model has non-finite weights in {bad[:3]}; not saving a broken checkpoint")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"`out_dir` {str(out)!r} cannot be created ({err.strerror}): "
                         "pass a folder you can write to") from err
    manifest: dict[str, Any] = {
        "preset": preset_name,
        "config": {"model": asdict(model.config), "train": asdict(train_cfg)},
        "train_cov": train_cov,
        "seed": result.seed,
        "train_steps": result.train_steps,
        "device": result.device,
        "world_size": int(result.extra.get("world_size", 1)),
        "wall_s": round(result.wall_s, 3),
        "ms_per_step": round(result.ms_per_step, 3),
        "num_parameters": num_parameters(model),
        "final_loss": result.final_loss(),
        "first_loss": result.losses[0],
        "loss_curve_block": 50,
        "loss_curve": _loss_curve(result.losses, 50),
        "versions": library_versions(),
        "command": command,
    }
    return _write(out, stem, state, manifest)


def _diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [f"{k}: checkpoint {a.get(k)!r} vs requested {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def _check_json_depth(raw: bytes, where: Path) -> None:
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH` before parsing it (brackets
    outside strings; a 100,000-deep file would otherwise end in RecursionError)."""
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH}: not a manifest")
        elif byte in (0x5D, 0x7D):
            depth -= 1


def check_pinned_manifest(manifest_path: Path, raw: bytes) -> None:
    """Refuse a manifest named like a committed course checkpoint whose bytes differ from the
    ones the library pins (``tts_lib._checkpoint_registry``): an edit with a recomputed
    ``digest`` is caught. Other names pass: checksummed by their own digest, not signed.

    Defined in Chapter 7.
    """
    pinned = MANIFEST_SHA256.get(Path(manifest_path).name)
    if pinned is not None and hashlib.sha256(raw).hexdigest() != pinned:
        raise ValueError(
            f"{manifest_path}: this is the name of a committed course checkpoint, but the manifest differs from "
            "the one pinned in tts_lib (tts_lib._checkpoint_registry): it was edited. Restore it (git checkout, "
            "or tts_lib.fetch), or, for a checkpoint you trained yourself, save it under another stem or pass "
            "registry=False (then it is checksummed, not signed)"
        )


def _read_manifest(path: str | Path, registry: bool = True) -> tuple[Path, dict[str, Any]]:
    p = _as_path(path, "path")
    manifest_path = p.with_suffix(".json")
    if not manifest_path.is_file():
        raise ValueError(f"`path`: no manifest {manifest_path}; pass the .json written by tts_lib.gpt2_train")
    size = manifest_path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ValueError(f"{manifest_path}: {size} bytes, beyond {MAX_MANIFEST_BYTES} for a manifest: not one")
    raw = manifest_path.read_bytes()
    if registry:
        check_pinned_manifest(manifest_path, raw)
    _check_json_depth(raw, manifest_path)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{manifest_path}: not a JSON manifest ({err})") from err
    if not isinstance(manifest, dict):
        raise ValueError(f"{manifest_path}: the manifest must be a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") in OLD_FORMATS:
        raise ValueError(
            f"{manifest_path}: format {manifest['format']} (before December 2026) is no longer read; retrain "
            f"with the manifest's command (field `command`) to get a {MANIFEST_FORMAT} checkpoint"
        )
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(
            f"{manifest_path}: field `format` is {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}"
        )
    for name in REQUIRED_FIELDS:
        if name not in manifest:
            raise ValueError(f"{manifest_path}: missing field `{name}`")
    return manifest_path, manifest


def verify_checkpoint(path: str | Path, *, registry: bool = True) -> tuple[dict[str, Any], Path]:
    """Check a manifest and its weights file without loading the weights; returns
    ``(manifest, weights_path)``. Raises ValueError naming the file and the field.

    ``registry``: a manifest named like a committed course checkpoint must be byte-identical to
    the one whose sha256 the library pins (``tts_lib._checkpoint_registry``), so an edited
    configuration is refused even when its ``digest`` was recomputed. Other checkpoints (or
    ``registry=False``) are checked against their own ``digest`` and ``sha256``: checksummed,
    not signed.

    Defined in Chapter 7.
    """
    if not isinstance(registry, bool):
        raise InputTypeError(f"`registry` must be True or False, got {registry!r}")
    manifest_path, manifest = _read_manifest(path, registry)
    try:
        digest = manifest_digest(manifest)
    except ValueError as err:  # NaN in the manifest
        raise ValueError(f"{manifest_path}: field values are not plain JSON ({err})") from err
    if digest != manifest["digest"]:
        raise ValueError(
            f"{manifest_path}: field `digest` does not match the manifest's content (sha256 over the "
            "configuration and the weights' sha256): the manifest was edited; retrain with its command"
        )
    name = manifest["checkpoint"]
    folder = manifest_path.parent.resolve()
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..") or not name.endswith(".pt"):
        raise ValueError(f"{manifest_path}: field `checkpoint` must be a .pt file name in its folder, got {name!r}")
    pt = manifest_path.parent / name
    if pt.is_symlink() or pt.resolve().parent != folder:
        raise ValueError(f"{manifest_path}: field `checkpoint` {name!r} points outside {folder}")
    if not pt.is_file():
        raise ValueError(f"{manifest_path}: field `checkpoint`: file {pt} is missing")
    sha = sha256_file(pt)
    if sha != manifest["sha256"]:
        raise ValueError(
            f"{manifest_path}: field `sha256`: the weights file {pt.name} has sha256 {sha[:12]}…, the manifest "
            f"says {str(manifest['sha256'])[:12]}…: the file was changed or corrupted; retrain with the command "
            "in the manifest"
        )
    return manifest, pt


def _check_state(state: Any, model: GPT2Regressor, where: Path) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict):
        raise ValueError(f"{where}: the weights file must hold a state_dict, got {type(state).__name__}")
    want = model.state_dict()
    unexpected = sorted(set(state) - set(want))
    missing = sorted(set(want) - set(state))
    if unexpected:
        raise ValueError(f"{where}: unexpected key `{unexpected[0]}` ({len(unexpected)} in all) for this configuration")
    if missing:
        raise ValueError(f"{where}: missing key `{missing[0]}` ({len(missing)} in all) for this configuration")
    for key, ref in want.items():
        v = state[key]
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            raise ValueError(f"{where}: key `{key}` must be a floating tensor, got {type(v).__name__}")
        if v.shape != ref.shape:
            need = tuple(ref.shape)
            raise ValueError(f"{where}: key `{key}` has shape {tuple(v.shape)}, the configuration needs {need}")
        if not torch.isfinite(v).all():
            raise ValueError(f"{where}: key `{key}` holds NaN or inf weights")
        top = float(v.abs().max()) if v.numel() else 0.0
        if top > MAX_WEIGHT:
            raise ValueError(f"{where}: key `{key}` holds a weight of size {top:.3g}, beyond {MAX_WEIGHT:g} "
                             "(a trained GPT-2 regressor's weights are of order 1): not a trained model")
    return state


def _check_requested(pt: Path, manifest: dict[str, Any], model_cfgs: tuple[Any, Any], train_cfgs: tuple[Any, Any],
                     train_cov: str | None) -> None:
    """Refuse a checkpoint whose configurations differ from the requested ones (None: any)."""
    (cfg, expected), (train_cfg, expected_train) = model_cfgs, train_cfgs
    for name, value, kind in (("expected", expected, GPT2RegressorConfig),
                              ("expected_train", expected_train, GPT2TrainConfig)):
        if value is not None and not isinstance(value, kind):
            raise InputTypeError(f"`{name}` must be a {kind.__name__} or None, got {value!r}")
    problems: list[str] = []
    if expected is not None:
        problems += _diff(asdict(cfg), asdict(expected))
    if expected_train is not None:
        problems += _diff(asdict(train_cfg) if train_cfg is not None else {}, asdict(expected_train))
    if train_cov is not None and manifest.get("train_cov") != train_cov:
        problems.append(f"train_cov: checkpoint {manifest.get('train_cov')!r} vs requested {train_cov!r}")
    if problems:
        raise ValueError(
            f"checkpoint {pt.name} does not match the requested configuration ("
            + "; ".join(problems)
            + f"); retrain with: {manifest.get('command')} adjusted, or request its configuration"
        )


def load_checkpoint(
    path: str | Path,
    *,
    expected: GPT2RegressorConfig | None = None,
    expected_train: GPT2TrainConfig | None = None,
    train_cov: str | None = None,
    device: torch.device | str | None = None,
    registry: bool = True,
    dtype: torch.dtype | None = None,
) -> tuple[GPT2Regressor, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint` (eval mode), verified (module doc).

    Args:
        path: the manifest ``.json`` or the ``.pt`` file next to it.
        expected: the model configuration the caller wants; any other is refused.
        expected_train: likewise for the training configuration (``train_steps`` included).
        train_cov: likewise for the training covariance name.
        device: where to put the model.
        registry: check a committed checkpoint against the library's pinned manifest hashes
            (see :func:`verify_checkpoint`).
        dtype: the model's dtype; ``None`` (default): the dtype its weights were saved in
            (float32 for every committed checkpoint), whatever ``torch``'s default dtype.
            A chapter's float64 default would otherwise evaluate the model in float64,
            2.7x slower on one CPU thread.

    Returns:
        ``(model, manifest)``.

    Raises:
        ValueError: naming the file and the field: missing files or fields, digest or
            sha256 mismatch, configuration mismatch, keys, shapes or non-finite weights.

    Defined in Chapter 7.
    """
    device = check_device(device)
    if dtype is not None:
        dtype = check_dtype(dtype)
    manifest, pt = verify_checkpoint(path, registry=registry)
    where = pt.with_suffix(".json")
    try:
        cfg, train_cfg = config_from_dict(manifest["config"])
    except ValueError as err:
        raise ValueError(f"{where}: field `config`: {err}") from err
    _check_requested(pt, manifest, (cfg, expected), (train_cfg, expected_train), train_cov)
    model = GPT2Regressor(cfg)  # its size was bounded by the configuration's check
    most = 8 * num_parameters(model) + (1 << 20)  # float64 weights plus the pickle's overhead
    if pt.stat().st_size > most:
        raise ValueError(f"{pt}: {pt.stat().st_size} bytes, more than the {most} this configuration's weights need")
    try:
        state = torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file with a matching hash
        raise ValueError(f"{pt}: not a loadable weights file ({type(err).__name__}: {err})") from err
    state = _check_state(state, model, pt)
    if dtype is None:  # the saved dtype: float64 if any weight is, else float32 (float16 too)
        dtype = torch.float64 if any(v.dtype == torch.float64 for v in state.values()) else torch.float32
    model.to(dtype=dtype)
    model.load_state_dict(state)
    model.to(device=device)
    model.eval()
    return model, manifest


# --------------------------------------------------------------------------- Hugging Face key map

#: Conv1D layers of Hugging Face's GPT-2 store the weight as (in, out): transposed here.
_HF_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _check_state_dict(state: Any) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise InputTypeError(f"`state` must be a state_dict (str -> tensor), got {type(state).__name__}")
    return state


def state_dict_from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Key map from the earlier layout (``read_in``, ``backbone`` = ``transformers.GPT2Model``,
    ``read_out``) to :class:`GPT2Regressor`:

    * ``backbone.wpe.weight`` → ``wpe.weight``; ``backbone.ln_f.*`` → ``ln_f.*``;
    * ``backbone.h.<i>.<rest>`` → ``blocks.<i>.<rest>``, the Conv1D weights
      ``attn.c_attn``, ``attn.c_proj``, ``mlp.c_fc``, ``mlp.c_proj`` transposed;
    * ``backbone.wte.weight`` (the unused token table of ``vocab_size=1``) and the attention
      mask buffers ``*.attn.bias`` / ``*.attn.masked_bias`` are dropped;
    * ``read_in.*`` and ``read_out.*`` are unchanged.

    Defined in Chapter 7.
    """
    state = _check_state_dict(state)
    out: dict[str, torch.Tensor] = {}
    for key, v in state.items():
        if key == "backbone.wte.weight" or key.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        if key.startswith("backbone.h."):
            new = "blocks." + key[len("backbone.h.") :]
            if new.endswith(_HF_CONV1D):
                v = v.t()
        elif key.startswith("backbone."):
            new = key[len("backbone.") :]
        else:
            new = key
        out[new] = v.contiguous()
    return out


def state_dict_to_hf(state: dict[str, torch.Tensor], width: int) -> dict[str, torch.Tensor]:
    """Inverse of :func:`state_dict_from_hf` for ``transformers.GPT2Model`` (keys without the
    ``backbone.`` prefix; a zero token table ``wte.weight`` of shape (1, width) is added).

    Defined in Chapter 7.
    """
    state = _check_state_dict(state)
    width = check_pos_int(width, "width", maximum=65536)
    if "wpe.weight" not in state:
        raise ValueError("`state` lacks `wpe.weight`: pass a GPT2Regressor's state_dict()")
    out: dict[str, torch.Tensor] = {}
    ref = state["wpe.weight"]
    for key, v in state.items():
        if key.startswith(("read_in.", "read_out.")):
            continue
        if key.startswith("blocks."):
            new = "h." + key[len("blocks.") :]
            if new.endswith(_HF_CONV1D):
                v = v.t()
        else:
            new = key
        out[new] = v.contiguous()
    out["wte.weight"] = ref.new_zeros(1, width)
    return out


def load_preset_checkpoint(
    folder: str | Path,
    preset_name: str,
    train_cov: str,
    context_len: int,
    seed: int = 0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[GPT2Regressor, dict[str, Any]]:
    """Load the checkpoint of preset ``preset_name`` trained on ``train_cov`` with training
    context ``context_len`` and ``seed`` from ``folder`` (e.g. ``fetch.checkpoint_dir()``):
    the file named by :func:`checkpoint_stem`, verified, and refused unless its
    configuration is exactly the preset's. Returns ``(model, manifest)``; ``device`` and
    ``dtype`` as in :func:`load_checkpoint` (default: the saved dtype, float32).

    Defined in Chapter 7.
    """
    if not isinstance(folder, (str, Path)):
        raise InputTypeError(f"`folder` must be a folder path (str or Path), got {type(folder).__name__}")
    if not isinstance(preset_name, str) or preset_name not in PRESETS:
        raise ValueError(f"`preset_name` must be one of {sorted(PRESETS)}, got {preset_name!r}")
    if train_cov not in TRAIN_COVS:
        raise ValueError(f"`train_cov` must be one of {TRAIN_COVS}, got {train_cov!r}")
    cfg, train_cfg = preset(preset_name, context_len=check_pos_int(context_len, "context_len"))
    stem = checkpoint_stem(preset_name, cfg, train_cfg, train_cov, check_pos_int(seed, "seed", minimum=0))
    return load_checkpoint(
        Path(folder) / f"{stem}.json", expected=cfg, expected_train=train_cfg, train_cov=train_cov, device=device,
        dtype=dtype
    )
