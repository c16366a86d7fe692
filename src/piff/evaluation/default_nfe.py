"""The default NFE of ``piff predict`` for one trained model: the fewest network evaluations whose
held-out error is as good as the reference NFE's, measured by the workflow and kept beside the model.

Rule (issue 14): the smallest sampled NFE whose MAE, on every terrain scored (seen: held-out storms
on the training DEMs; unseen: held-out DEMs), is within ``TOLERANCE`` (3 %) of the MAE at
``REFERENCE_NFE`` (10; the largest sampled NFE if 10 was not sampled). The evaluate rule writes
the choice into ``metrics.json`` (``default_nfe``) next to the experiment's ``model.pt``; ``piff
predict`` reads it from there when ``--nfe`` is omitted, if the file's model fingerprint is the
model's (a retrained model never inherits an old choice), and otherwise uses ``FALLBACK_NFE``.
Torch- and pandas-free: the CLI reads it before loading anything heavy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from piff.errors import PiffInputError

REFERENCE_NFE = 10
TOLERANCE = 0.03
FALLBACK_NFE = 10
METRICS_FILE = "metrics.json"  # the evaluate rule's output beside results/<name>/model.pt
MEASURED = "default"  # the word a config gives for "each model at its recorded default NFE"

log = logging.getLogger("piff.default_nfe")


def choose(mae: dict[int, dict[str, float]]) -> dict:
    """``mae[nfe][terrain]`` (m, storm group "all") -> the choice as stored in metrics.json:
    ``{"nfe", "reference_nfe", "tolerance", "mae_m": {terrain: at the chosen nfe}, "reference_mae_m"}``."""
    if not mae:
        raise ValueError("no NFE was scored")
    reference = REFERENCE_NFE if REFERENCE_NFE in mae else max(mae)
    ref = mae[reference]
    chosen = reference
    for nfe in sorted(mae):
        if nfe < reference and all(t in mae[nfe] and mae[nfe][t] <= (1 + TOLERANCE) * ref[t] for t in ref):
            chosen = nfe
            break
    return {"nfe": int(chosen), "reference_nfe": int(reference), "tolerance": TOLERANCE,
            "mae_m": dict(mae[chosen]), "reference_mae_m": dict(ref)}


def recorded(model_path, fingerprint: str) -> int | None:
    """The default NFE the workflow measured for this model (``metrics.json`` beside it), or None
    when there is none, it is unreadable, or it belongs to another model."""
    path = Path(model_path).with_name(METRICS_FILE)
    try:
        data = json.loads(path.read_text())
        choice, measured_for = data.get("default_nfe"), data.get("model_fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(choice, dict) or not fingerprint or measured_for != fingerprint:
        if isinstance(choice, dict):
            log.warning("%s: its default NFE was measured for another model (fingerprint %s, this model %s); "
                        "not used", path, measured_for, fingerprint)
        return None
    nfe = choice.get("nfe")
    return int(nfe) if isinstance(nfe, int) and nfe >= 1 else None


def resolve(nfe, model_path, fingerprint: str) -> int:
    """``nfe`` as an integer: itself, or for ``MEASURED`` the NFE recorded for this model (a
    PiffInputError naming the metrics file when none is recorded for it)."""
    if nfe != MEASURED:
        return int(nfe)
    chosen = recorded(model_path, fingerprint)
    if chosen is None:
        raise PiffInputError(Path(model_path).with_name(METRICS_FILE),
                             f"no default NFE recorded for this model (nfe: {MEASURED!r} needs the evaluate "
                             "rule's metrics.json of the same model)")
    return chosen
