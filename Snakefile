# DenseNet reproducibility harness: trains a study's matrix of cells and renders one report.
# `snakemake --cores all` runs the default study (config/config.yaml); --configfile
# config/studies/<name>.yaml switches study. Layout and contracts: ../shared/DESIGN.md,
# docs/contracts.md; usage: README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/gradcheck.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/cost.smk"
include: "workflow/rules/runner_env.smk"


# Every cell of the study, its gradient checks and the report.
rule all:
    default_target: True
    input:
        get_final_targets(),
