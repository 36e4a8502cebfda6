# The study as the report reads it: expected cells and environments, config and its hash.
rule write_manifest:
    output:
        "results/{study}/manifest.json",
    log:
        "results/{study}/logs/manifest.log",
    priority: 100
    params:
        manifest=get_manifest(),
    run:
        save_manifest(output[0], params.manifest, log[0])


# The final report, once every cell and gradient check has a result (a failed cell has none:
# then the re-render after it, onerror below and `snakemake report` show the study).
rule render_report:
    input:
        manifest=rules.write_manifest.output,
        summaries=get_all_summaries,
        gradchecks=get_all_gradchecks,
        predicted=get_predicted_cost,
    output:
        report(directory("results/{study}/report"), htmlindex="report.html"),
    log:
        "results/{study}/logs/report.log",
    run:
        shell(
            "{PYTHON} {RENDER_REPORT} --manifest {input.manifest} --out {output} > {log} 2>&1"
        )


# `snakemake --cores all report`: re-render now from whatever cells exist, trains nothing.
rule report:
    input:
        manifest=expand(rules.write_manifest.output, study=STUDY),
    log:
        expand("results/{study}/logs/report-now.log", study=STUDY),
    run:
        shell(
            "{PYTHON} {RENDER_REPORT} --manifest {input.manifest}"
            " --out results/{STUDY}/report > {log} 2>&1"
        )


# After failed jobs or an interrupt, render_report cannot run (it needs every cell), so leave a
# report of whatever exists: failed, interrupted and missing cells are shown as such.
onerror:
    shell(
        "{PYTHON} {RENDER_REPORT} --progress --manifest {STUDY_DIR}/manifest.json"
        " --out {STUDY_DIR}/report || true"
    )
