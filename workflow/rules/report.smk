# Record the study as the report reads it: expected cells and environments, config and hash.
rule write_manifest:
    output:
        "results/{study}/manifest.json",
    log:
        "results/{study}/logs/manifest.log",
    priority: 100
    params:
        manifest=get_manifest(),
    script:
        "../scripts/write_manifest.py"


# Render the final report once every cell and gradient check has a result.
# A failed cell has none: then the re-render after it, onerror below and `snakemake --cores all
# render_report` show the study.
rule render_final_report:
    input:
        manifest=rules.write_manifest.output,
        summaries=get_all_summaries,
        gradchecks=get_all_gradchecks,
        predicted=get_predicted_cost,
    output:
        report(directory("results/{study}/report"), htmlindex="report.html"),
    log:
        "results/{study}/logs/report.log",
    shell:
        "{PYTHON} {PUBLISH_REPORT} --manifest {input.manifest} --out {output} > {log} 2>&1"


# Re-render the report now from whatever cells exist, training nothing.
# The user's target: `snakemake --cores all render_report`.
rule render_report:
    input:
        manifest=expand(rules.write_manifest.output, study=STUDY),
    log:
        expand("results/{study}/logs/report-now.log", study=STUDY),
    params:
        out="%s/report" % STUDY_DIR,
    shell:
        "{PYTHON} {PUBLISH_REPORT} --manifest {input.manifest} --out {params.out} > {log} 2>&1"


# After failed jobs or an interrupt, render_final_report cannot run (it needs every cell), so
# leave a report of whatever exists: failed, interrupted and missing cells are shown as such.
onerror:
    shell(
        "{PYTHON} {PUBLISH_REPORT} --progress --manifest {STUDY_DIR}/manifest.json"
        " --out {STUDY_DIR}/report || true"
    )
