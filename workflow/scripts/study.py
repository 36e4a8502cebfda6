"""A study: the validated config, its matrix of cells and environments, and its manifest.

Plain Python without Snakemake, so workflow/rules/common.smk stays a list of helpers and this
logic is unit-tested on its own (tests/test_pipeline_config.py). Every error is a ConfigError
whose message is one line naming the offending key and value.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import shlex
from typing import Any, Collection, Iterable, Mapping, Optional, Sequence, Union

import jsonschema
import yaml

# Study axes in the order they appear in cell ids (DESIGN.md, "Study axes").
AXES = (
    "model",
    "dataset",
    "augment",
    "optimizer",
    "recipe",
    "torch",
    "cudnn",
    "tf32",
    "deterministic",
    "canary",
    "seed",
)
ON_OFF_AXES = ("augment", "cudnn", "tf32", "deterministic")
# Axes a study file may leave out, with the value that means "as before": a study written
# before the axis existed plans the same cells.
AXIS_DEFAULTS = {"recipe": ["lua"]}
# An environment is what the gradient stage checks once: image x device x cudnn x tf32 x canary.
ENV_AXES = ("torch", "cudnn", "tf32", "canary")
ON_OFF_KEYS = (
    ("train", "keep_checkpoint"),
    ("train", "fast"),
    ("train", "compile"),
    ("train", "overlap"),
    ("data", "download"),
)


class ConfigError(ValueError):
    """A config problem, told in one line that names the key and the value."""


def on_off(value: Union[bool, str]) -> str:
    """YAML 1.1 reads a bare on/off as a boolean: map both spellings to "on"/"off"."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    return value


def key_path(path: Iterable[Union[str, int]]) -> str:
    """deque(['axes', 'cudnn', 1]) -> 'axes.cudnn[1]'."""
    text = ""
    for part in path:
        text += "[%d]" % part if isinstance(part, int) else ("." if text else "") + str(part)
    return text or "(top level)"


def describe(error: jsonschema.exceptions.ValidationError) -> str:
    """One line for a jsonschema error: where, what was found, what is allowed."""
    where = key_path(error.absolute_path)
    kind, value = error.validator, error.instance
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed))
        prefix = where + "." if error.absolute_path else ""
        return "unknown key %s (allowed here: %s)" % (
            ", ".join(prefix + k for k in extra),
            ", ".join(allowed),
        )
    if kind == "required":
        missing = error.message.split("'")[1]
        prefix = where + "." if error.absolute_path else ""
        return "missing key %s%s" % (prefix, missing)
    if kind == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return "%s: %r is not one of %s" % (where, value, allowed)
    if kind == "type":
        expected = error.validator_value
        text = "string" in (expected if isinstance(expected, list) else [expected])
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        hint = quote_hint(where, text, value)
        return "%s: expected %s, got %r%s" % (where, expected, value, hint)
    if kind == "minItems":
        return "%s: empty axis or list (give at least %d value)" % (where, error.validator_value)
    if kind == "uniqueItems":
        return "%s: duplicate values in %r would give duplicate cells" % (where, value)
    if kind == "oneOf" and isinstance(value, (str, bool)):
        return "%s: %r is not one of on, off" % (where, value)
    return "%s: %s" % (where, error.message.replace("\n", " "))


def quote_hint(where: str, text_expected: bool, value: object) -> str:
    """Why a number stands where text was meant, and the fix. YAML reads 2024 or 2.10 as
    numbers (2.10 as 2.1), and so does Snakemake for a top-level --config value, whose quotes
    it strips; converting the number back could not restore '2.10', so the text must be
    marked as text where it is written."""
    if not text_expected or not isinstance(value, (bool, int, float)):
        return ""
    kind = "boolean" if isinstance(value, bool) else "number"
    how = 'quote it as written ("...") in the YAML file'
    if "." not in where and "[" not in where:
        how = (
            "write %s: \"...\" in a YAML file, or --config '%s=!!str ...' (Snakemake "
            "drops quotes from --config values)" % (where, where)
        )
    return " (read as a %s; %s)" % (kind, how)


def typed(
    value: Any, schema: Optional[Mapping[str, Any]] = None, root: Optional[Mapping[str, Any]] = None
) -> Any:
    """Snakemake parses nested --config values with YAML's BaseLoader, so every leaf arrives
    as a string ('200', 'null'); read such leaves again as YAML scalars. Where the schema
    says a key is text (a study name, a torch key), the string is kept as given: read as
    YAML, '2.10' would become the number 2.1 and name another image."""
    root = schema if root is None else root
    schema = resolve(schema or {}, root)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: typed(v, props.get(k), root) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v, schema.get("items"), root) for v in value]
    if isinstance(value, str):
        try:
            loaded = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if is_text(schema) and not (loaded is None and allows_null(schema)):
            return value
        if isinstance(loaded, float) and "number" not in schema_types(schema):
            # No key is a float unless the schema says so: a float is text read as a number
            # (a torch key "2.10" as 2.1), also where no schema is given (rerun commands).
            return value
        return loaded if loaded is None or isinstance(loaded, (bool, int, float, str)) else value
    return value


def resolve(schema: object, root: Optional[Mapping[str, Any]]) -> Mapping[str, Any]:
    """schema with a local $ref ('#/definitions/x') followed."""
    ref = schema.get("$ref", "") if isinstance(schema, dict) else ""
    if not ref.startswith("#/"):
        return schema if isinstance(schema, dict) else {}
    node = root
    for part in ref[2:].split("/"):
        node = node.get(part, {})
    return resolve(node, root)


def schema_types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def is_text(schema: Mapping[str, Any]) -> bool:
    """A key whose only non-null type is string (no on/off boolean spelling to read)."""
    return [t for t in schema_types(schema) if t != "null"] == ["string"]


def allows_null(schema: Mapping[str, Any]) -> bool:
    return "null" in schema_types(schema)


def apply_overrides(
    config: Mapping[str, Any],
    overrides: Mapping[str, Any],
    schema: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """config with the --config overrides (Snakemake's parse) merged in again, typed (by
    the schema, where given)."""
    merged = copy.deepcopy(dict(config))
    props = (schema or {}).get("properties", {})
    for key, value in overrides.items():
        value = json.loads(json.dumps(value, default=dict))
        value = typed(value, props.get(key), schema)
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both else value
    return out


def validate(config: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Check config against the JSON schema and the rules a schema cannot say; return a
    normalized deep copy (on/off spelled as strings). Raises ConfigError."""
    validator = jsonschema.Draft7Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError("config error: " + describe(error))
    cfg = copy.deepcopy(config)
    for axis, value in AXIS_DEFAULTS.items():
        cfg["axes"].setdefault(axis, list(value))
    if cfg["runner"] == "venv":  # other studies' manifests stay as they were
        for key, value in VENV_DEFAULTS.items():
            cfg["containers"].setdefault(key, value)
    for axis in ON_OFF_AXES:
        cfg["axes"][axis] = [on_off(v) for v in cfg["axes"][axis]]
    for section, key in ON_OFF_KEYS:
        cfg[section][key] = on_off(cfg[section][key])
    for rule in cfg["exclude"]:
        for axis in ON_OFF_AXES:
            if axis in rule:
                rule[axis] = on_off(rule[axis])
    check_semantics(cfg)
    return cfg


# containers.venvs / venv_dir when a study leaves them out (only runner venv reads them).
VENV_DEFAULTS = {"venvs": "containers/venvs.lock.yaml", "venv_dir": ".venvs"}


def check_semantics(cfg: Mapping[str, Any]) -> None:
    axes = cfg["axes"]
    for axis in ON_OFF_AXES:
        if len(set(axes[axis])) != len(axes[axis]):
            raise ConfigError(
                "config error: axes.%s: %r names the same value twice (true/on, false/off) "
                "and would give duplicate cells" % (axis, axes[axis])
            )
    for i, rule in enumerate(cfg["exclude"]):
        for axis, value in rule.items():
            if value not in axes[axis]:
                raise ConfigError(
                    "config error: exclude[%d].%s: %r is not a value of axes.%s (%s)"
                    % (i, axis, value, axis, ", ".join(map(str, axes[axis])))
                )
    local = cfg["runner"] == "local"
    for key in axes["torch"]:
        if local and key != "local":
            raise ConfigError(
                "config error: axes.torch: %r needs runner docker or venv (the local runner "
                "runs the installed torch: use [local])" % key
            )
        if not local and key == "local":
            raise ConfigError(
                "config error: axes.torch: 'local' means this environment; runner %s "
                "needs keys of %s"
                % (
                    cfg["runner"],
                    cfg["containers"]["venvs" if cfg["runner"] == "venv" else "lock"],
                )
            )
    data = cfg["data"]
    if data["require_official"] and "synthetic" in axes["dataset"]:
        raise ConfigError(
            "config error: axes.dataset: 'synthetic' contradicts data.require_official: true"
        )
    if data["require_official"] and data["fallback"] != "none":
        raise ConfigError(
            "config error: data.fallback: %r contradicts data.require_official: true "
            "(use none)" % data["fallback"]
        )


def check_torch_keys(cfg: Mapping[str, Any], lock_keys: Collection[object], lock_path: str) -> None:
    """Docker studies name images by keys of the lock file, venv studies environments by keys
    of theirs."""
    if cfg["runner"] == "local":
        return
    for key in cfg["axes"]["torch"]:
        if key not in lock_keys:
            raise ConfigError(
                "config error: axes.torch: %r is not a key of %s (keys: %s)"
                % (key, lock_path, ", ".join(sorted(map(str, lock_keys))) or "none")
            )


def check_digests(
    cfg: Mapping[str, Any], images: Mapping[str, Mapping[str, Any]], lock_path: str
) -> None:
    """Strict studies (containers.strict_digests) run registry images by pinned digest only:
    an axis key whose registry image has no digest is a config error before any job."""
    if cfg["runner"] != "docker" or not cfg["containers"]["strict_digests"]:
        return
    for key in cfg["axes"]["torch"]:
        entry = images[key]
        if not entry.get("build") and not entry.get("digest"):
            raise ConfigError(
                "config error: axes.torch: %r (%s) has no digest in %s and "
                "containers.strict_digests is true; pin it: "
                "python workflow/scripts/pin_images.py %s" % (key, entry.get("tag"), lock_path, key)
            )


def leaf_keys(tree: Mapping[Any, Any], prefix: str = "") -> set[str]:
    """Dotted paths of the non-mapping values of a nested dict."""
    keys = set()
    for key, value in tree.items():
        path = prefix + str(key)
        if isinstance(value, dict) and value:
            keys |= leaf_keys(value, path + ".")
        else:
            keys.add(path)
    return keys


def check_study_files(
    default_config: Mapping[Any, Any], study_configs: Sequence[tuple[str, Mapping[Any, Any]]]
) -> None:
    """Snakemake merges --configfile files over config/config.yaml key by key, so a study
    file that leaves a key out silently inherits the default study's value (its tiny
    n_train, say). A study file therefore sets every key; --config KEY=VALUE tweaks one."""
    given = set()
    for _, study in study_configs:
        given |= leaf_keys(study)
    optional = {"axes." + axis for axis in AXIS_DEFAULTS}  # left out: the value as before
    missing = sorted(leaf_keys(default_config) - given - optional)
    if missing:
        path = study_configs[-1][0]
        raise ConfigError(
            "config error: %s does not set %s: a study file sets every key of "
            "config/config.yaml (use --config KEY=VALUE to change one key)"
            % (path, ", ".join(missing))
        )


def cell_id(params: Mapping[str, Any]) -> str:
    """A readable id holding every axis, so adding a value to an axis never renames cells. The
    recipe shows where it is not the default lua (`sgd.recipe-bamos.torch-...`): the ids of
    lua cells stay those of the studies written before the recipe axis."""
    p = params
    recipe = p.get("recipe", "lua")
    return ".".join(
        [
            p["model"],
            p["dataset"],
            "aug-" + p["augment"],
            p["optimizer"],
        ]
        + ([] if recipe == "lua" else ["recipe-" + recipe])
        + [
            "torch-" + p["torch"],
            "cudnn-" + p["cudnn"],
            "tf32-" + p["tf32"],
            "det-" + p["deterministic"],
            "canary-" + p["canary"],
            "seed-%d" % p["seed"],
        ]
    )


def env_id(params: Mapping[str, Any]) -> str:
    p = params
    return "torch-%s.%s.cudnn-%s.tf32-%s.canary-%s" % (
        p["torch"],
        p["device"],
        p["cudnn"],
        p["tf32"],
        p["canary"],
    )


def excluded(params: Mapping[str, Any], rules: Iterable[Mapping[str, Any]]) -> bool:
    return any(all(params[k] == v for k, v in rule.items()) for rule in rules)


def build_matrix(
    cfg: Mapping[str, Any], effective_dataset: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Cells (product of the axes minus exclusions, dataset after any fallback) and the
    environments they use. Returns (cells, envs), each a list of {"id", "params", ...}."""
    axes = cfg["axes"]
    cells, seen = [], {}
    for values in itertools.product(*(axes[a] for a in AXES)):
        params = dict(zip(AXES, values))
        if excluded(params, cfg["exclude"]):
            continue
        params["dataset"] = effective_dataset.get(params["dataset"], params["dataset"])
        params.update(protocol=cfg["protocol"], device=cfg["device"])
        cid = cell_id(params)
        if cid in seen:
            raise ConfigError(
                "config error: axes.dataset: duplicate cell %s (%s falls back to %s, which "
                "the axis already lists)" % (cid, values[1], params["dataset"])
            )
        env = {k: params[k] for k in ENV_AXES}
        env["device"] = cfg["device"]
        seen[cid] = True
        cells.append({"id": cid, "params": params, "env": env_id(env), "env_params": env})
    if not cells:
        raise ConfigError("config error: exclude: the exclusions remove every cell of the matrix")
    envs = {}
    for cell in cells:
        envs.setdefault(cell["env"], cell["env_params"])
    return cells, [{"id": k, "params": v} for k, v in envs.items()]


def config_hash(cfg: Mapping[str, Any]) -> str:
    text = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def rerun_command(summary_path: str, cli_args: Iterable[str]) -> str:
    """The one command that retrains one cell. The targets come before cli_args: --config
    takes every word after it."""
    words = ["snakemake", "--cores", "all", summary_path, "-f"] + list(cli_args)
    return " ".join(shlex.quote(w) for w in words)


def manifest(
    cfg: Mapping[str, Any],
    cells: Iterable[Mapping[str, Any]],
    envs: Iterable[Mapping[str, Any]],
    fallback: Optional[str],
    cli_args: Sequence[str],
) -> dict[str, Any]:
    """results/<study>/manifest.json (docs/contracts.md)."""
    root = "results/%s" % cfg["study"]
    out_cells = []
    for cell in cells:
        cell_dir = "%s/cells/%s" % (root, cell["id"])
        out_cells.append(
            {
                "id": cell["id"],
                "dir": cell_dir,
                "params": cell["params"],
                "env": cell["env"],
                "rerun": rerun_command(cell_dir + "/summary.json", cli_args),
            }
        )
    return {
        "study": cfg["study"],
        "config_hash": config_hash(cfg),
        "config": cfg,
        "dataset_fallback": fallback,
        "cells": out_cells,
        "envs": [
            {"id": e["id"], "dir": "%s/gradcheck/%s" % (root, e["id"]), "params": e["params"]}
            for e in envs
        ],
    }


def manifest_json(
    cfg: Mapping[str, Any],
    cells: Iterable[Mapping[str, Any]],
    envs: Iterable[Mapping[str, Any]],
    fallback: Optional[str],
    cli_args: Sequence[str],
) -> str:
    return json.dumps(manifest(cfg, cells, envs, fallback, cli_args), indent=1, sort_keys=True)
