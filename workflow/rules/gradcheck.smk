# Check one environment's gradients against a float64 CPU reference.
# An environment is torch x device x cudnn x tf32 x canary; the check runs through the same
# runner as training. A `fail` verdict is a result, not an error: the runner exits 0 and
# training goes on, so the report can show both.
rule check_gradients:
    input:
        unpack(get_env_inputs),
    output:
        "results/{study}/gradcheck/{env}/gradcheck.json",
    log:
        "results/{study}/logs/gradcheck/{env}.log",
    threads: get_threads()
    resources:
        gpu=get_gpu_count,
        runner=get_env_runner,
        runtime=60,
        mem_mb=get_mem_mb,
    params:
        gradcheck=get_gradcheck_args,
    shell:
        "{PYTHON} {RUN_CELL} {resources.runner} --mem-mb {resources.mem_mb}"
        " -- gradcheck {params.gradcheck} > {log} 2>&1"
