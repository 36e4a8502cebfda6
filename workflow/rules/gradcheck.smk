# Once per environment (torch x device x cudnn x tf32 x canary): gradients against a float64
# CPU reference, through the same runner as training. A `fail` verdict is a result, not an
# error: the runner exits 0 and training goes on, so the report can show both.
rule check_gradients:
    output:
        "results/{study}/gradcheck/{env}/gradcheck.json",
    log:
        "results/{study}/logs/gradcheck/{env}.log",
    threads: get_threads()
    resources:
        gpu=get_gpu_count,
    params:
        gradcheck=get_gradcheck_args,
    run:
        shell(
            "{PYTHON} {RUN_CELL} {runner} -- gradcheck {params.gradcheck} > {log} 2>&1",
            runner=get_env_runner_args(wildcards, threads),
        )
