"""Training (the `train` extra: torch, onnx): never imported at run time, except the torch-free data helpers."""

TRAIN_EXTRA_HINT = ("needs the training extra, which the runtime does not install: pip install -e '.[train]' "
                    "(it pins torch 2.13.0; a plain 'torch' may download a multi-GB CUDA build)")


def require_train_extra(command: str) -> None:
    """Exit with one line naming what to install when torch or onnx is missing (the training
    commands are run as `python -m edge.training.X`, on a machine that may have only the runtime)."""
    import importlib.util

    missing = [m for m in ("torch", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"{command}: {' and '.join(missing)} not installed; {TRAIN_EXTRA_HINT}")
