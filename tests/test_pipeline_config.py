"""Pipeline config: schema errors in one line naming the key, the matrix and its ids, the data
plan (present / download / build / synthetic fallback), and the job command lines."""

import copy
import os
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "workflow", "scripts"))

import commands  # noqa: E402
import data_plan  # noqa: E402
import study  # noqa: E402


def load(path):
    with open(os.path.join(REPO, path)) as f:
        return yaml.safe_load(f)


@pytest.fixture
def default():
    return load("config/config.yaml")


@pytest.fixture(scope="module")
def schema():
    return load("workflow/schemas/config.schema.yaml")


def error_of(cfg, schema):
    with pytest.raises(study.ConfigError) as info:
        study.validate(cfg, schema)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_every_shipped_study_validates(schema):
    for path in ["config/config.yaml"] + [
        "config/studies/" + f for f in sorted(os.listdir(os.path.join(REPO, "config/studies")))
    ]:
        cfg = study.validate(load(path), schema)
        assert cfg["axes"]["cudnn"][0] in ("on", "off"), path


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda c: c.update(colour="blue"), "unknown key colour"),
        (lambda c: c["train"].update(epocs=3), "unknown key train.epocs"),
        (lambda c: c["train"].update(epochs="three"), "train.epochs: expected integer or null"),
        (lambda c: c["axes"].update(seed=[]), "axes.seed: empty axis"),
        (lambda c: c["axes"].update(model=[]), "axes.model: empty axis"),
        (lambda c: c["axes"].update(seed=[0, 0]), "axes.seed: duplicate values"),
        (lambda c: c["axes"].update(augment=["on", True]), "axes.augment: "),
        (
            lambda c: c["axes"].update(cudnn=["maybe"]),
            "axes.cudnn[0]: 'maybe' is not one of on",
        ),
        (lambda c: c["axes"].update(model=["resnet50"]), "axes.model[0]: 'resnet50' is not one of"),
        (lambda c: c.pop("protocol"), "missing key protocol"),
        (
            lambda c: c.update(runner="kubernetes"),
            "runner: 'kubernetes' is not one of local",
        ),
        (
            lambda c: c["axes"].update(torch=["2.5.1"]),
            "axes.torch: '2.5.1' needs runner docker or venv",
        ),
        (lambda c: c["exclude"].append({"canary": "noncontig"}), "exclude[0].canary: 'noncontig'"),
        (
            lambda c: (
                c["exclude"].append({"canary": "none"})
                or c["exclude"].append({"canary": "noncontig-grad"})
            ),
            "exclusions remove every cell",
        ),
    ],
)
def test_config_errors_are_one_line_naming_the_key(default, schema, edit, fragment):
    edit(default)
    if fragment == "exclusions remove every cell":
        cfg = study.validate(default, schema)
        with pytest.raises(study.ConfigError, match=fragment):
            study.build_matrix(cfg, {})
        return
    message = error_of(default, schema)
    assert message.startswith("config error: ")
    assert fragment in message


def test_bare_on_off_are_normalized(default, schema):
    default["axes"]["cudnn"] = [True, False]  # what YAML makes of bare on, off
    cfg = study.validate(default, schema)
    assert cfg["axes"]["cudnn"] == ["on", "off"]
    cells, _ = study.build_matrix(cfg, {})
    assert {c["params"]["cudnn"] for c in cells} == {"on", "off"}


def test_matrix_counts_exclusions_and_envs(default, schema):
    default["axes"].update(seed=[0, 1, 2], augment=["on", "off"])
    default["exclude"] = [{"canary": "noncontig-grad", "augment": "off"}]
    cells, envs = study.build_matrix(study.validate(default, schema), {})
    # 2 canaries x 2 augment x 3 seeds = 12, minus the 3 excluded (canary + C10).
    assert len(cells) == 9
    assert len({c["id"] for c in cells}) == 9
    assert sorted(e["id"] for e in envs) == [
        "torch-local.auto.cudnn-on.tf32-off.canary-noncontig-grad",
        "torch-local.auto.cudnn-on.tf32-off.canary-none",
    ]
    ids = [c["id"] for c in cells]
    assert (
        "densenet-bc40-k12.cifar10.aug-off.sgd.torch-local.cudnn-on.tf32-off.det-off."
        "canary-none.seed-2" in ids
    )


def test_fallback_that_duplicates_a_cell_is_an_error(default, schema):
    default["axes"]["dataset"] = ["cifar10", "synthetic"]
    cfg = study.validate(default, schema)
    with pytest.raises(study.ConfigError, match="duplicate cell .*falls back to synthetic"):
        study.build_matrix(cfg, {"cifar10": "synthetic"})


def test_study_file_must_set_every_key(default):
    partial = copy.deepcopy(default)
    del partial["train"]["n_train"]
    with pytest.raises(study.ConfigError, match=r"my\.yaml does not set train\.n_train"):
        study.check_study_files(default, [("my.yaml", partial)])
    study.check_study_files(default, [("paper.yaml", load("config/studies/paper.yaml"))])


def test_nested_config_overrides_are_typed():
    # Snakemake reads nested --config values with YAML's BaseLoader: all strings.
    merged = study.apply_overrides(
        {"train": {"epochs": 2, "n_train": 5}}, {"train": {"epochs": "1", "n_test": "null"}}
    )
    assert merged == {"train": {"epochs": 1, "n_train": 5, "n_test": None}}


def test_docker_study_needs_lock_keys(schema):
    cfg = study.validate(load("config/studies/paper.yaml"), schema)
    lock = load("containers/images.lock.yaml")["images"]
    study.check_torch_keys(cfg, lock, "containers/images.lock.yaml")
    with pytest.raises(study.ConfigError, match="axes.torch: '2.3.1' is not a key of lock.yaml"):
        study.check_torch_keys(cfg, {"2.0.1": {}}, "lock.yaml")


def test_paper_study_matrix(schema):
    cells, envs = study.build_matrix(study.validate(load("config/studies/paper.yaml"), schema), {})
    # 4 torch x 2 models x C10/C10+ x cuDNN on/off x 3 seeds; envs: 4 torch x cuDNN on/off.
    assert (len(cells), len(envs)) == (96, 8)


def test_data_plan_order(tmp_path, default):
    data = dict(default["data"], dir=str(tmp_path / "data"), builder=str(tmp_path / "build.py"))
    online, offline = (lambda: True), (lambda: False)
    assert data_plan.plan(data, ["cifar10"], network=online)[0] == {"cifar10": "download"}
    # Offline without a builder file: the default study falls back to synthetic, and says so.
    actions, effective, fallback = data_plan.plan(data, ["cifar10"], network=offline)
    assert (actions, effective) == ({}, {"cifar10": "synthetic"})
    assert "CIFAR-10 not found" in fallback and "no published comparison" in fallback
    (tmp_path / "build.py").write_text("")
    assert data_plan.plan(data, ["cifar10"], network=offline)[0] == {"cifar10": "build"}
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in data_plan.FILES["cifar10"]:
        (folder / name).write_bytes(b"")
    assert data_plan.plan(data, ["cifar10"], network=offline)[0] == {"cifar10": "identify"}
    # A study that requires official data never falls back: prepare_data fails at run time.
    strict = dict(data, dir=str(tmp_path / "none"), require_official=True, fallback="none")
    assert data_plan.plan(strict, ["cifar10"], network=offline)[:2] == (
        {"cifar10": "download"},
        {"cifar10": "cifar10"},
    )


def test_data_plan_files_match_densenet():
    from densenet import data

    assert data_plan.FILES == data.FILES and data_plan.FOLDERS == data.FOLDERS


def test_train_args_carry_every_axis_and_override(default, schema):
    cfg = study.validate(default, schema)
    cells, _ = study.build_matrix(cfg, {})
    args = commands.train_args(cfg, cells[1]["params"])
    text = " ".join(map(str, args))
    for fragment in (
        "--canary noncontig-grad",
        "--cudnn on",
        "--tf32 off",
        "--n-train 2000",
        "--epochs 2",
        "--download off",
        "--device auto",
        "--protocol smoke",
    ):
        assert fragment in text
    assert "--batch-size" not in text  # null: the protocol's own
    assert "--out" not in text and "--data-dir" not in text  # the runner's business


def test_compile_is_off_by_default_and_passed_only_when_on(default, schema):
    cfg = study.validate(default, schema)
    cells, _ = study.build_matrix(cfg, {})
    assert cfg["train"]["compile"] == "off"
    assert "--compile" not in commands.train_args(cfg, cells[0]["params"])  # params unchanged
    default["train"]["compile"] = True  # YAML 1.1's bare `on`
    cfg = study.validate(default, schema)
    args = " ".join(map(str, commands.train_args(cfg, cells[0]["params"])))
    assert "--fast auto --compile on" in args
    default["train"]["compile"] = "yes"
    assert "train.compile" in error_of(default, schema)


def test_overlap_is_on_by_default_and_never_retrains_a_cell(default, schema):
    cfg = study.validate(default, schema)
    cells, _ = study.build_matrix(cfg, {})
    params = commands.train_args(cfg, cells[0]["params"])
    assert commands.train_options(cfg)[-2:] == ["--overlap", "on"]
    default["train"]["overlap"] = False  # YAML 1.1's bare `off`
    cfg = study.validate(default, schema)
    assert commands.train_options(cfg)[-2:] == ["--overlap", "off"]
    assert commands.train_args(cfg, cells[0]["params"]) == params  # not a rule param
    default["train"]["overlap"] = "maybe"
    assert "train.overlap" in error_of(default, schema)


def test_densenet_argv_is_the_one_finished_command():
    """Both runners finish a job's command here: --out and --data-dir as the started process
    sees them, then --image-ref (docker) once the image is resolved."""
    argv = commands.densenet_argv("python", ["train", "--model", "m"], "/cell", "/data")
    assert argv == ["python", "-m", "densenet", "train", "--model", "m", "--out", "/cell"] + [
        "--data-dir",
        "/data",
    ]
    assert commands.densenet_argv("py", ["gradcheck"], "/cell")[-2:] == ["--out", "/cell"]
    assert commands.with_image_ref(argv, "t@d")[-2:] == ["--image-ref", "t@d"]


def test_cli_args_one_flag_each_typed():
    args = commands.cli_args(["config/studies/a.yaml"], {"train": {"epochs": "1"}, "study": "x"})
    assert args == [
        "--configfile",
        "config/studies/a.yaml",
        "--config",
        "study=x",
        'train={"epochs": 1}',
    ]


def test_rerun_command_names_the_study_file():
    m = study.manifest(
        {"study": "paper"},
        [{"id": "c1", "params": {}, "env": "e1"}],
        [{"id": "e1", "params": {}}],
        None,
        ["--configfile", "config/studies/paper.yaml"],
    )
    assert m["cells"][0]["rerun"] == (
        "snakemake --cores all results/paper/cells/c1/summary.json -f "
        "--configfile config/studies/paper.yaml"
    )
    assert m["envs"][0]["dir"] == "results/paper/gradcheck/e1"


@pytest.mark.parametrize(
    "config_arg, fragment",
    [
        ("colour=blue", "unknown key colour"),
        ('train={"epochs": "three"}', "train.epochs: expected integer or null, got 'three'"),
        ('axes={"seed": []}', "axes.seed: empty axis"),
        ('axes={"seed": [0, 0]}', "axes.seed: duplicate values in [0, 0]"),
    ],
)
def test_snakemake_stops_with_one_line(config_arg, fragment):
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--config", config_arg],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0
    errors = [line for line in res.stderr.splitlines() if "config error" in line]
    assert len(errors) == 1 and fragment in errors[0], res.stderr
    assert "Traceback" not in res.stderr
