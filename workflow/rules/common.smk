# Validated config, the matrix of cells and environments, and the get_*/is_* helpers that the
# rules use. The logic lives in workflow/scripts/ (study.py, data_plan.py, commands.py: plain
# Python, unit-tested without Snakemake); this file wires it to the config.
#
# What a job computes goes into its params, since Snakemake reruns a job whose params changed
# (the profiles' --rerun-triggers mtime params input). How a job runs (runner, image lock, GPU
# policy, threads, checkpoint keeping, the data action) must never retrain a finished cell, so
# it reaches the command otherwise: study-wide values as the constants below (TRAIN_OPTIONS,
# RENDER_PROGRESS), per-job values as string resources (runner=..., action=...), which are no
# rerun trigger either.

import os
import re
import sys

import yaml

SCRIPTS = os.path.join(workflow.basedir, "workflow", "scripts")
sys.path[:0] = [SCRIPTS, workflow.basedir]

import commands  # noqa: E402
import data_plan  # noqa: E402
import image_lock  # noqa: E402
import predict_cost  # noqa: E402
import runner_env  # noqa: E402
import slurm_resources  # noqa: E402
import study  # noqa: E402

# Jobs call the harness through the interpreter that runs Snakemake, so the venv's python is
# used even when the venv is not activated.
PYTHON = sys.executable
RUN_CELL = os.path.join(SCRIPTS, "run_cell.py")
PREPARE_DATA = os.path.join(SCRIPTS, "prepare_data.py")
PUBLISH_REPORT = os.path.join(SCRIPTS, "publish_report.py")
PREDICT_COST = os.path.join(SCRIPTS, "predict_cost.py")
SCHEMA = os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")
DEFAULT_CONFIGFILE = os.path.join("config", "config.yaml")


def read_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def load_study():
    """Validate the merged config and build the study; returns
    (cfg, data actions, cells, envs, dataset fallback sentence or None)."""
    files = [str(p) for p in workflow.overwrite_configfiles]
    if files and not workflow.config_settings.replace_workflow_config:
        studies = [(os.path.relpath(p), read_yaml(p)) for p in files]
        study.check_study_files(read_yaml(DEFAULT_CONFIGFILE), studies)
    schema = read_yaml(SCHEMA)
    merged = study.apply_overrides(config, workflow.config_settings.config, schema)
    cfg = study.validate(merged, schema)
    if cfg["runner"] == "docker":
        lock = cfg["containers"]["lock"]
        images = lock_images(lock)
        study.check_torch_keys(cfg, images, lock)
        study.check_digests(cfg, images, lock)
    if cfg["runner"] == "venv":
        lock = cfg["containers"]["venvs"]
        try:
            keys = runner_env.read_lock(lock)
        except runner_env.EnvError as exc:
            raise study.ConfigError(
                "config error: containers.venvs: %s" % exc
            ) from None
        study.check_torch_keys(cfg, keys, lock)
    actions, effective, fallback = data_plan.plan(cfg["data"], cfg["axes"]["dataset"])
    cells, envs = study.build_matrix(cfg, effective)
    return cfg, actions, cells, envs, fallback


def lock_images(lock):
    """The image lock's key -> entry mapping, read as the docker runner reads it: a
    missing or malformed lock is one line naming containers.lock, not a traceback."""
    try:
        return image_lock.read_images(lock)
    except image_lock.LockError as exc:
        raise study.ConfigError("config error: containers.lock: %s" % exc) from None


try:
    CFG, DATA_ACTIONS, CELLS, ENVS, DATASET_FALLBACK = load_study()
except study.ConfigError as exc:
    # One line naming the key and value, without a Snakemake traceback around it.
    sys.exit(str(exc))

if DATASET_FALLBACK:
    # Loud on purpose: the one fallback of the harness (DESIGN.md, "Data").
    print(
        "!" * 78,
        "DATASET FALLBACK: %s" % DATASET_FALLBACK,
        "!" * 78,
        sep="\n",
        file=sys.stderr,
    )

STUDY = CFG["study"]
STUDY_DIR = "results/%s" % STUDY
# The cost prediction, predict_cost's output. The report shows it, the cells wait for it, and
# their time limit and memory are read from it.
PREDICTED_COST = "%s/predicted_cost.json" % STUDY_DIR
CELL_BY_ID = {c["id"]: c for c in CELLS}
ENV_BY_ID = {e["id"]: e for e in ENVS}


# On a cluster these stay on the submitting host: they are quick, and prepare_data and
# build_runner_env may need the network that compute nodes lack.
localrules:
    all,
    prepare_data,
    write_manifest,
    predict_cost,
    build_runner_env,
    render_final_report,
    render_report,


wildcard_constraints:
    study=re.escape(STUDY),
    cell="|".join(re.escape(c) for c in CELL_BY_ID),
    env="|".join(re.escape(e) for e in ENV_BY_ID),
    dataset="|".join(re.escape(d) for d in DATA_ACTIONS) or "(?!)",


def is_real_dataset(name):
    return name != "synthetic"


def get_final_targets():
    """What `snakemake --cores all` builds: every cell, every gradient check, the manifest
    and the report. Cells are listed themselves, not only through the report: the report is
    re-rendered after each cell, so after an interrupt it exists while cells are missing.
    """
    cells = get_all_summaries(None) + get_all_gradchecks(None)
    return (
        cells
        + get_predicted_cost(None)
        + ["%s/manifest.json" % STUDY_DIR, "%s/report" % STUDY_DIR]
    )


def get_predicted_cost(wildcards):
    """The cost prediction, when report.predict_cost asks for one (the report shows it)."""
    return [PREDICTED_COST] if CFG["report"]["predict_cost"] else []


def get_data_action(wildcards):
    """How prepare_data gets the data (a resource: once the data is in place the action
    becomes `identify`, and that must not redo the job)."""
    return commands.quote(commands.data_args(CFG, DATA_ACTIONS[wildcards.dataset]))


def get_require_official_flag():
    return "--require-official" if CFG["data"]["require_official"] else ""


def get_threads():
    """CPU threads per job: train.threads, or all cores given (0), so on a CPU machine one
    job at a time uses the whole machine instead of several jobs fighting over it. A cluster
    run gives no --cores: 1 then, unless the profile's set-threads says otherwise."""
    return CFG["train"]["threads"] or workflow._cores or 1


def get_gpu_count(wildcards):
    """The `gpu` resource of a training or gradient job (capped by --resources gpu=N)."""
    return 0 if CFG["device"] == "cpu" or CFG["gpu"] == "none" else 1


def get_train_inputs(wildcards):
    """Its environment's gradient check (so that stage runs first; its verdict never blocks
    training), the cost prediction when report.predict_cost is on and, for real data, the
    dataset record of prepare_data. All ancient: they order the jobs, and a rerun of any of
    them (new gradcheck options, a new prediction, data re-identified) must not retrain
    finished cells.

    The prediction orders the cells because a cell's time limit and memory (get_runtime,
    get_mem_mb) are read from it: Snakemake evaluates a job's resources again when the job
    becomes ready, so a cell that waits for predicted_cost.json is submitted with its
    predicted limits even in the invocation that makes the prediction (the first one of a
    study on a cluster), not with the protocol's defaults."""
    cell = CELL_BY_ID[wildcards.cell]
    inputs = {
        "gradcheck": ancient(
            "%s/gradcheck/%s/gradcheck.json" % (STUDY_DIR, cell["env"])
        )
    }
    if CFG["report"]["predict_cost"]:
        inputs["prediction"] = ancient(PREDICTED_COST)
    inputs.update(get_runner_env(cell["params"]["torch"]))
    if is_real_dataset(cell["params"]["dataset"]):
        inputs["data"] = ancient(
            "%s/data/%s.json" % (STUDY_DIR, cell["params"]["dataset"])
        )
    return inputs


def get_runner_env(torch):
    """The venv runner's environment of a torch key, built before any job of it runs
    (ancient: a rebuild must not retrain finished cells); nothing for the other runners.
    """
    if CFG["runner"] != "venv":
        return {}
    marker = os.path.join(CFG["containers"]["venv_dir"], torch, runner_env.MARKER)
    return {"runner_env": ancient(marker)}


def get_env_inputs(wildcards):
    """A gradient check's or cost probe's inputs: its environment's venv (runner venv)."""
    return get_runner_env(ENV_BY_ID[wildcards.env]["params"]["torch"])


def get_runtime(wildcards, attempt):
    """SLURM time limit of a cell, in minutes: its predicted time with a margin
    (workflow/scripts/slurm_resources.py), or the protocol's default before a prediction.
    """
    predicted = slurm_resources.read_predicted(PREDICTED_COST, wildcards.cell)
    return slurm_resources.runtime_minutes(predicted, CFG["protocol"], attempt)


def get_mem_mb(wildcards, attempt):
    """Memory of a training, gradient or probe job, in MB (workflow/scripts/slurm_resources.py:
    a cell's predicted peak with a margin, else by device kind; doubled on each retry): a
    scheduling resource (capped by --resources mem_mb=N, requested from SLURM) and, with the
    docker runner, the container's memory limit; one job kind's own: --set-resources
    train_cell:mem_mb=N."""
    predicted = None
    if hasattr(wildcards, "cell"):  # gradient checks and probes have no prediction
        predicted = slurm_resources.read_predicted(
            PREDICTED_COST, wildcards.cell, "predicted_mem_mb"
        )
    return slurm_resources.mem_mb(CFG, attempt, predicted)


def get_train_args(wildcards):
    """What the cell computes: a change of these options retrains it."""
    return commands.quote(
        commands.train_args(CFG, CELL_BY_ID[wildcards.cell]["params"])
    )


def get_cell_runner(wildcards, threads):
    """run_cell.py's options for a cell (a resource: a new GPU policy, runner or thread count
    must not retrain finished cells)."""
    p = CELL_BY_ID[wildcards.cell]["params"]
    data_dir = CFG["data"]["dir"] if is_real_dataset(p["dataset"]) else None
    cell_dir = "%s/cells/%s" % (STUDY_DIR, wildcards.cell)
    return commands.quote(
        commands.runner_args(CFG, p["torch"], cell_dir, threads, data_dir)
    )


def get_gradcheck_args(wildcards):
    return commands.quote(
        commands.gradcheck_args(CFG, ENV_BY_ID[wildcards.env]["params"])
    )


def env_runner(env, stage, threads):
    """run_cell.py's options for a job of one environment that writes into
    results/<study>/<stage>/<env> (a resource, as for cells)."""
    torch = ENV_BY_ID[env]["params"]["torch"]
    out_dir = "%s/%s/%s" % (STUDY_DIR, stage, env)
    return commands.quote(commands.runner_args(CFG, torch, out_dir, threads))


def get_env_runner(wildcards, threads):
    """run_cell.py's options for an environment's gradient check."""
    return env_runner(wildcards.env, "gradcheck", threads)


def get_probe_args(wildcards):
    return commands.quote(
        predict_cost.probe_args(
            CELLS, wildcards.env, ENV_BY_ID[wildcards.env]["params"]
        )
    )


def get_probe_runner(wildcards, threads):
    """run_cell.py's options for an environment's cost probe."""
    return env_runner(wildcards.env, "cost", threads)


def get_progress_command():
    """The report re-render after each cell (report.progress), or `true` when off."""
    if not CFG["report"]["progress"]:
        return "true"
    return commands.quote(commands.progress_args(PYTHON, PUBLISH_REPORT, STUDY_DIR))


# `densenet train` options that change no result (commands.train_options): the same for every
# cell, so a constant of the train_cell command rather than a param.
TRAIN_OPTIONS = commands.quote(commands.train_options(CFG))
# The best-effort report re-render after each cell.
RENDER_PROGRESS = get_progress_command()


def get_all_summaries(wildcards):
    return ["%s/cells/%s/summary.json" % (STUDY_DIR, c["id"]) for c in CELLS]


def get_all_gradchecks(wildcards):
    return ["%s/gradcheck/%s/gradcheck.json" % (STUDY_DIR, e["id"]) for e in ENVS]


def get_manifest():
    """results/<study>/manifest.json as JSON text (docs/contracts.md)."""
    files = workflow.overwrite_configfiles
    args = commands.cli_args(files, workflow.config_settings.config)
    return study.manifest_json(CFG, CELLS, ENVS, DATASET_FALLBACK, args)
