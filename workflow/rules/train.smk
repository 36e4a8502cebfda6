# Train one cell through the runner, then re-render the report.
# The re-render is best effort and follows any outcome, so a long study shows its progress and
# a one-cell rerun refreshes the report. Only summary.json is declared: Snakemake deletes the
# declared outputs of a failed or interrupted job, and the resumable checkpoint beside it must
# survive.
rule train_cell:
    input:
        unpack(get_train_inputs),
    output:
        "results/{study}/cells/{cell}/summary.json",
    log:
        "results/{study}/logs/cells/{cell}.log",
    threads: get_threads()
    resources:
        gpu=get_gpu_count,
        runner=get_cell_runner,
        runtime=get_runtime,
        mem_mb=get_mem_mb,
    params:
        train=get_train_args,
    shell:
        "{PYTHON} {RUN_CELL} {resources.runner} --mem-mb {resources.mem_mb} -- train {params.train} {TRAIN_OPTIONS}"
        " > {log} 2>&1 || rc=$?; {RENDER_PROGRESS} >> {log} 2>&1; exit ${{rc:-0}}"
