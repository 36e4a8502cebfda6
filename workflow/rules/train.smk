# One per cell, through the runner. Only summary.json is declared: Snakemake deletes the
# declared outputs of a failed or interrupted job, and the resumable checkpoint beside it must
# survive. Whatever the outcome, the report is then re-rendered (best effort), so a long study
# shows its progress and a one-cell rerun refreshes the report.
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
    params:
        train=get_train_args,
    run:
        shell(
            "{PYTHON} {RUN_CELL} {runner} -- train {params.train} {options} > {log} 2>&1"
            " || rc=$?; {progress} >> {log} 2>&1; exit ${{rc:-0}}",
            runner=get_cell_runner_args(wildcards, threads),
            options=get_train_options(),
            progress=get_progress_command(),
        )
