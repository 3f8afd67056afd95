"""Training (the `train` extra: torch, onnx): never imported at run time, except the torch-free data helpers."""

TRAIN_EXTRA_HINT = ("needs the training extra, which the runtime does not install: pip install -e '.[train]' "
                    "(it pins torch 2.13.0; a plain 'torch' may download a multi-GB CUDA build)")


def require_train_extra(command: str, modules: tuple[str, ...] = ("torch", "onnx")) -> None:
    """Exit with one line naming what to install when torch or onnx (or what `modules` names) is
    missing (the training commands are run as `python -m edge.training.X`, on a machine that may
    have only the runtime)."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"{command}: {' and '.join(missing)} not installed; {TRAIN_EXTRA_HINT}")


def run_main(command: str, main) -> int:
    """Run a training command's `main()`: a missing or unreadable file or a value it refuses (an
    OSError or ValueError: no labels.csv, no checkpoint, a model not found) ends in one line naming
    it, exit 2, as the `alpr-edge` commands do, instead of a traceback; any other error (a bug, torch
    running out of memory) keeps its traceback."""
    import sys

    try:
        return int(main() or 0)
    except (OSError, ValueError) as err:
        if isinstance(err, OSError) and err.strerror and err.filename:
            message = f"{err.strerror}: {err.filename}"
        else:
            message = str(err) or type(err).__name__
        print(f"{command}: error: {' '.join(message.split())}", file=sys.stderr)
        return 2


def save_onnx(model, path) -> None:
    """onnx.save to a temporary file beside `path`, then renamed over it: an export or quantization
    interrupted (Ctrl-C, a full disk) leaves the model that was there (a shipped models/*.onnx, often
    the target) as it was, never half a file or a graph without its metadata, which the runtime
    refuses to load."""
    import os
    from pathlib import Path

    import onnx

    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
