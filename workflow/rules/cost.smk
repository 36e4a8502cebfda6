# Cost prediction: before the cells train, a short timing probe per environment (a few steps
# of each model and optimizer its cells use, through the same runner as training), then one
# predicted time per cell, which the report shows beside the measured one. Include after
# common.smk and report.smk (it uses their helpers and rules.write_manifest).


# Time a few steps of each model and optimizer of one environment.
# Seconds on a GPU, minutes on a CPU. The cells wait for the prediction (common.smk,
# get_train_inputs): their time limit and memory are read from it.
rule probe_cost:
    input:
        unpack(get_env_inputs),
    output:
        "results/{study}/cost/{env}/probe.json",
    log:
        "results/{study}/logs/cost/{env}.log",
    priority: 90
    threads: get_threads()
    resources:
        gpu=get_gpu_count,
        runner=get_probe_runner,
        runtime=30,
        mem_mb=get_mem_mb,
    params:
        probe=get_probe_args,
    shell:
        "{PYTHON} {RUN_CELL} {resources.runner} --mem-mb {resources.mem_mb}"
        " -- bench --probe {params.probe} > {log} 2>&1"


# Predict every cell's time from the probes and the manifest.
rule predict_cost:
    input:
        manifest=rules.write_manifest.output,
        probes=lambda w: ["%s/cost/%s/probe.json" % (STUDY_DIR, e["id"]) for e in ENVS],
    output:
        "results/{study}/predicted_cost.json",
    log:
        "results/{study}/logs/predicted_cost.log",
    priority: 90
    shell:
        "{PYTHON} {PREDICT_COST} --manifest {input.manifest} --out {output}"
        " {input.probes} > {log} 2>&1"
