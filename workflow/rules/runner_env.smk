# The venv runner's Python environments (runner: venv; containers/venvs.lock.yaml): each torch
# key of the study built once, on the submitting host (a local rule: pip may need the network
# that compute nodes lack), into containers.venv_dir, which the compute nodes share. Its
# marker runner_env.json is an input of every job of that key (workflow/rules/common.smk,
# get_runner_env).
VENV_DIR = CFG["containers"].get("venv_dir", study.VENV_DEFAULTS["venv_dir"])
VENV_LOCK = CFG["containers"].get("venvs", study.VENV_DEFAULTS["venvs"])


rule build_runner_env:
    output:
        os.path.join(VENV_DIR, "{key}", runner_env.MARKER),
    log:
        os.path.join(VENV_DIR, "{key}.log"),
    wildcard_constraints:
        key="|".join(re.escape(k) for k in CFG["axes"]["torch"]),
    params:
        lock=VENV_LOCK,
        script=os.path.join(SCRIPTS, "runner_env.py"),
    shell:
        "{PYTHON} {params.script} --lock {params.lock} --key {wildcards.key}"
        " --dir $(dirname {output}) > {log} 2>&1"
