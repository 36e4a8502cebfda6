# Once per dataset: identify the copy under data.dir, or download it (torchvision, MD5-checked),
# or build it offline; the record says which identity the study trains on.
rule prepare_data:
    output:
        "results/{study}/data/{dataset}.json",
    log:
        "results/{study}/logs/data/{dataset}.log",
    params:
        action=get_data_action,
        data_dir=CFG["data"]["dir"],
        extra=get_data_args,
    run:
        shell(
            "{PYTHON} {PREPARE_DATA} --dataset {wildcards.dataset} --data-dir {params.data_dir}"
            " --action {params.action} {params.extra} --out {output} > {log} 2>&1"
        )
