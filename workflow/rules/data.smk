# Once per dataset: identify the copy under data.dir, or download it (torchvision, MD5-checked),
# or build it offline; the record says which identity the study trains on.
rule prepare_data:
    output:
        "results/{study}/data/{dataset}.json",
    log:
        "results/{study}/logs/data/{dataset}.log",
    params:
        data_dir=CFG["data"]["dir"],
        require_official=get_require_official_flag(),
    run:
        shell(
            "{PYTHON} {PREPARE_DATA} --dataset {wildcards.dataset} --data-dir {params.data_dir}"
            " {how} {params.require_official} --out {output} > {log} 2>&1",
            how=get_data_args(wildcards),
        )
