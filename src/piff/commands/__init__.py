"""Sub-commands of the ``piff`` CLI (see ``piff.cli``), and the argparse types they share."""

import argparse


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (thread counts, batch sizes, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (Manning n, cell sizes, ...)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def torch_device(text: str) -> str:
    """An argparse type: ``auto`` or a torch device (cpu, cuda, cuda:1, ...) that exists here;
    returned as given, checked before any file is read."""
    if text == "auto":
        return text
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, TypeError) as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device ({str(err).splitlines()[0]})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA was requested but torch sees no CUDA device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    return text


def json_object(option: str, text: str, example: str) -> dict:
    """A command-line option holding a JSON object (``--hparams``, ``--options``): the parsed
    dict, or a one-line error naming the option."""
    import json

    from piff.errors import PiffInputError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise PiffInputError(option, f"not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise PiffInputError(option, f"must be a JSON object like {example}, got {text!r}")
    return value
