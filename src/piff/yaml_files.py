"""Read YAML config files strictly: a key written twice in one mapping is an error.

PyYAML (and so Snakemake's ``configfile:``) keeps the last of two equal keys without a word,
which once turned a half-pasted config.yaml into a different, valid-looking config. Torch-free:
the workflow controller imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from piff.errors import PiffInputError


class _UniqueKeyLoader(yaml.SafeLoader):
    pass


def _mapping_without_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"duplicate key {key!r} (first at line {seen[key] + 1}, again at line {key_node.start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_yaml(path: str | os.PathLike):
    """The YAML document in ``path``; PiffInputError naming the file for malformed YAML or a
    key given twice in one mapping."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except OSError as err:
        raise PiffInputError(path, f"cannot read ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err)
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None and "line" not in problem else ""
        raise PiffInputError(path, f"not valid YAML: {problem}{where}") from None
