# The venv runner's Python environments (runner: venv; containers/venvs.lock.yaml): each torch
# key of the study built once, on the submitting host (a local rule: pip may need the network
# that compute nodes lack), into containers.venv_dir, which the compute nodes share. Its
# marker runner_env.json is an input of every job of that key (workflow/rules/common.smk,
# get_runner_env).
rule build_runner_env:
    output:
        os.path.join(CFG["containers"]["venv_dir"], "{key}", runner_env.MARKER),
    log:
        os.path.join(CFG["containers"]["venv_dir"], "{key}.log"),
    wildcard_constraints:
        key="|".join(re.escape(k) for k in CFG["axes"]["torch"]),
    params:
        lock=CFG["containers"]["venvs"],
        script=os.path.join(SCRIPTS, "runner_env.py"),
    shell:
        "{PYTHON} {params.script} --lock {params.lock} --key {wildcards.key}"
        " --dir $(dirname {output}) > {log} 2>&1"
