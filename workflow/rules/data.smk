# Get one dataset into data.dir and record which identity the study trains on.
# The copy there is identified by checksum, else downloaded (torchvision, MD5-checked), else
# built offline, as the data plan decided when the DAG was built.
rule prepare_data:
    output:
        "results/{study}/data/{dataset}.json",
    log:
        "results/{study}/logs/data/{dataset}.log",
    resources:
        action=get_data_action,
    params:
        data_dir=CFG["data"]["dir"],
        require_official=get_require_official_flag(),
    shell:
        "{PYTHON} {PREPARE_DATA} --dataset {wildcards.dataset} --data-dir {params.data_dir}"
        " {resources.action} {params.require_official} --out {output} > {log} 2>&1"
