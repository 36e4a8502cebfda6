"""The report's verdicts are honest: every seed of a group counts, only the paper's recipe is
compared, "differs" holds the published run to the spread of ours, and the page says what the
data and the gradient stage were (fast; fixture studies rendered in process)."""

import math
import os
import re
from html import unescape

import numpy as np
import pandas as pd
import pytest
import report_fixtures as fx
from report_html import Page
from scipy import stats

from densenet.gradcheck import stage as gradcheck  # the stage's thresholds
from report import aggregate, references, render, sections, study
from report.cli import main as report_main
from report.labels import add_labels


def render_study(root, cells, envs=(), verdicts=None):
    """Gradcheck dirs for envs ({env id: (verdict, max rel err)}, default pass), a manifest of
    cells, and the rendered report: {"html", "page", "runs", "out"}."""
    for p in envs:
        verdict, err = (verdicts or {}).get(fx.env_id(p), ("pass", 2e-6))
        fx.write_gradcheck(root, p, verdict, err)
    manifest = fx.write_manifest(root, os.path.basename(root), cells, list(envs))
    out = os.path.join(root, "report")
    assert report_main(["--manifest", manifest, "--out", out]) == 0
    html = open(os.path.join(out, "report.html")).read()
    runs = pd.read_csv(os.path.join(out, "runs.csv"), dtype={"seed": str})
    return {"html": html, "page": Page(html), "runs": runs, "out": out}


def tables_of(root, cells):
    """The aggregate of the cells already written under root, with the page's labels."""
    tables = aggregate.aggregate(study.from_manifest(fx.write_manifest(root, "t", cells, [])))
    return add_labels(tables.runs), tables


def comparison_rows(report):
    """{group: [texts of its comparison-table cells]}: one tbody per block, whose first cell
    names the group."""
    blocks = {}
    for cell in report["page"].table("comparison-table"):
        if cell["tag"] == "td":
            blocks.setdefault(id(cell["tbody"]), []).append(cell["text"])
    return {texts[0]: texts[1:] for texts in blocks.values()}


def header(report, term):
    """The text of one <dd> of the page's header list."""
    meta = report["html"].split('<dl class="meta">')[1].split("</dl>")[0]
    dd = meta.split("<dt>%s</dt><dd>" % term)[1].split("</dd>")[0]
    return _text(dd)


def _text(html):
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def section_text(report, section):
    body = report["html"].split('<section id="%s">' % section)[1].split("</section>")[0]
    return _text(body)


# --- finding 1: diverged, unfinished and all-diverged groups --------------------------------


@pytest.fixture(scope="module")
def seeds_study(tmp_path_factory):
    """Paper protocol on official data: densenet40-k12 with seed 2 diverged; densenet100-k12
    with both seeds diverged; densenet-bc100-k12 C10+ with 2 completed and 3 running seeds."""
    root = str(tmp_path_factory.mktemp("seeds") / "seedsstudy")
    cells = []
    for seed, err in enumerate((7.02, 7.10, None)):
        p = fx.params(seed=seed)
        cells.append(p)
        if err is None:
            fx.write_cell(root, p, "diverged", diverge_at=41, reason="non-finite loss")
        else:
            fx.write_cell(root, p, final_err=err)
    for seed in range(2):
        p = fx.params(model="densenet100-k12", seed=seed)
        cells.append(p)
        fx.write_cell(root, p, "diverged", diverge_at=3, reason="non-finite loss")
    for seed in range(5):
        p = fx.params(model="densenet-bc100-k12", augment="on", seed=seed)
        cells.append(p)
        if seed < 2:
            fx.write_cell(root, p, final_err=4.55 + 0.05 * seed)
        else:
            fx.write_cell(root, p, "running", final_err=4.6, running_epochs=100)
    return render_study(root, cells, [cells[0]])


def test_a_diverged_seed_is_shown_and_makes_the_group_not_reproduced(seeds_study):
    texts = comparison_rows(seeds_study)["densenet40-k12 \u00b7 C10"]
    assert "2 of 3 seeds (1 diverged)" in texts
    verdicts = texts[6::4]  # variant, seeds, ours, then source, published, delta, verdict
    assert len(verdicts) == 1  # recipe lua: the paper's row only
    assert all(t.startswith("not reproduced: 1 of 3 seeds diverged;") for t in verdicts)
    assert "completed seeds: reproduced: within" in verdicts[0]  # what the 2 seeds alone say
    assert "paper: 1 not reproduced (diverged seeds)" in header(seeds_study, "published comparison")


def test_unfinished_seeds_make_the_verdict_provisional(seeds_study):
    texts = comparison_rows(seeds_study)["densenet-bc100-k12 \u00b7 C10+"]
    assert "2 of 5 seeds (3 running)" in texts
    verdicts = texts[6::4]  # variant, seeds, ours, then source, published, delta, verdict
    assert len(verdicts) == 1
    assert verdicts[0].startswith("provisional: ")
    assert verdicts[0].endswith("(seeds unfinished: 3 running)")
    counts = header(seeds_study, "published comparison")
    assert "1 group(s) provisional" in counts
    # counted apart from the final verdicts: the paper's only final row is the diverged group
    assert counts.startswith("paper: 1 not reproduced (diverged seeds) (+ provisional, seeds ")


def test_a_group_without_completed_seeds_is_listed_with_its_reason(seeds_study):
    comparison = section_text(seeds_study, "comparison")
    assert "densenet100-k12 \u00b7 C10" in comparison
    assert (
        "no completed seed: 2 diverged" in comparison and "0 of 2 seeds (2 diverged)" in comparison
    )
    assert "1 group(s) not comparable" in header(seeds_study, "published comparison")


def test_seed_states_verdict_overrules_and_qualifies():
    ok = references.verdict([7.0, 7.1, 6.95], 7.0)
    assert ok["class"] == "pass"
    out = sections.seed_states_verdict(ok, diverged=1, expected=4, pending="1 running")
    assert out["class"] == "fail" and out["text"].startswith("not reproduced: 1 of 4 seeds")
    assert out["name"] == "not-reproduced" and not out["provisional"]  # no seed can undo it
    out = sections.seed_states_verdict(ok, diverged=0, expected=5, pending="2 running")
    assert out["class"] == "pass" and out["name"] == "reproduced" and out["provisional"]
    assert out["text"].startswith("provisional: reproduced")
    assert out["text"].endswith("(seeds unfinished: 2 running)")


# --- finding 2: the paper's recipe ------------------------------------------------------------


def paper_runs(**config):
    row = {
        "dataset_identity": "official",
        "protocol": "paper",
        "epochs_planned": 300,
        "optimizer": "sgd",
        "dataset": "cifar10",
        "augment": "off",
    }
    return pd.DataFrame([dict(row, **config)])


@pytest.mark.parametrize(
    "config",
    [
        {},  # keys not recorded (older cells): the protocol's defaults, the paper's recipe
        dict(
            n_train=None,
            n_test=None,
            batch_size=64,
            lr=0.1,
            dropout=0.2,
            augment_order="official",
            bias="off",
            stem="lua",  # the authors' code's stem: not gated
        ),
        dict(n_train=50000, n_test=10000, batch_size=64.0, lr=0.1, dropout=0.2),
        dict(augment_order="bamos"),  # no augmentation: the order computes nothing
    ],
)
def test_the_paper_recipe_is_comparable(config):
    assert references.not_comparable(paper_runs(**config)) is None


@pytest.mark.parametrize(
    "config, reason",
    [
        (dict(n_train=5000), "n_train 5000, the paper uses the full set 50000"),
        (dict(n_test=1000.0), "n_test 1000, the paper uses the full set 10000"),
        (dict(batch_size=256), "batch_size 256, the paper uses 64"),
        (dict(lr=0.4), "lr 0.4, the paper uses 0.1"),
        (dict(dropout=0.0), "dropout 0, the paper uses 0.2"),
        (dict(augment="on", dropout=0.2), "dropout 0.2, the paper uses 0"),
    ],
)
def test_a_recipe_override_is_not_compared_and_named(config, reason):
    assert reason in references.not_comparable(paper_runs(**config))


def test_the_recipe_reaches_runs_csv_and_the_page(tmp_path):
    root = str(tmp_path / "recipestudy")
    cells = [fx.params(seed=s) for s in range(3)]
    for s, p in enumerate(cells):
        fx.write_cell(root, p, final_err=7.0 + 0.05 * s, config=dict(n_train=5000, batch_size=256))
    report = render_study(root, cells, [cells[0]])
    runs = report["runs"]
    assert set(aggregate.CONFIG_COLUMNS) <= set(runs)
    assert set(runs["n_train"]) == {5000} and set(runs["batch_size"]) == {256}
    assert set(runs["lr"]) == {0.1} and set(runs["augment_order"]) == {"official"}
    assert report["page"].table("comparison-table") == []
    assert (
        "n_train 5000, the paper uses the full set 50000; batch_size 256, the paper uses 64"
        in section_text(report, "comparison")
    )


# --- finding 3: "differs" treats the published value as one run ---------------------------


def test_differs_tests_the_published_run_as_one_more_draw():
    errors = [7.0, 7.1, 6.9, 7.05, 6.95, 7.02, 6.98, 7.08, 6.92, 7.0]
    result = references.verdict(errors, 7.1)
    # a pooled two-sample t-test against a sample of one is the prediction-interval test
    assert result["p_different"] == pytest.approx(stats.ttest_ind(errors, [7.1]).pvalue)
    assert stats.ttest_1samp(errors, 7.1).pvalue < 0.001  # the old test: "differs"
    assert result["class"] != "fail" and result["p_different"] > 0.05
    far = references.verdict([8.0, 8.05, 7.95], 7.0)
    assert far["class"] == "fail" and far["text"].startswith(
        "differs: published run outside our seeds' 95% prediction interval (delta +1.00 points"
    )
    n, mean, sd = 3, 8.0, 0.05
    t = (mean - 7.0) / (sd * math.sqrt(1 + 1.0 / n))
    assert far["p_different"] == pytest.approx(2 * stats.t.sf(t, n - 1))


def test_the_false_differs_rate_stays_at_alpha():
    """Seeds and the published run from one distribution: "differs" about alpha of the time,
    whatever the number of seeds (the one-sample t-test reached ~0.5 with 10 seeds)."""
    rng = np.random.RandomState(7)
    for n in (3, 10):
        draws = rng.normal(7.0, 0.15, size=(2000, n + 1))
        rate = np.mean(
            [references.verdict(d[:n], d[n], tolerance=0.01)["class"] == "fail" for d in draws]
        )
        assert 0.03 < rate < 0.075, (n, rate)


def test_a_differing_group_renders_differs(tmp_path):
    root = str(tmp_path / "differstudy")
    cells = [fx.params(seed=s) for s in range(3)]
    for s, p in enumerate(cells):
        fx.write_cell(root, p, final_err=8.3 + 0.05 * s)
    report = render_study(root, cells, [cells[0]])
    texts = comparison_rows(report)["densenet40-k12 \u00b7 C10"]
    assert any(t.startswith("differs: published run outside") and "(delta +1." in t for t in texts)
    assert "one more run" in section_text(report, "comparison")


# --- findings 4 and 5: chainer overlay, unidentified data --------------------------------------


def panels_of(root, cells, **kw):
    for p in cells:
        fx.write_cell(root, p, **kw)
    runs, tables = tables_of(root, cells)
    curves = tables.curves.join(runs.set_index("cell_id")[["group", "variant"]], on="cell_id")
    return render.curve_panels(runs, curves, {v: (0, 0, 0) for v in runs["variant"].unique()})


def test_chainer_curves_only_beside_chainer_recipe_paper_protocol_official_cells(tmp_path):
    chainer = fx.recipe_config("chainer")
    (paper,) = panels_of(str(tmp_path / "a"), [fx.params(seed=0)], final_err=7.0, config=chainer)
    assert paper["chainer"] and paper["chainer_note"] is None
    smoke = fx.params(protocol="smoke", device="cpu", torch="local")
    (short,) = panels_of(str(tmp_path / "b"), [smoke], final_err=60.0, config=chainer)
    assert not short["chainer"] and "protocol smoke (3 epochs)" in short["chainer_note"]
    (jpeg,) = panels_of(str(tmp_path / "c"), [fx.params()], identity="cifar10-jpeg75")
    assert not jpeg["chainer"] and "cifar10-jpeg75 data" in jpeg["chainer_note"]
    # The curves are the chainer recipe's reference: a lua cell (recorded or not) gets none.
    (lua,) = panels_of(str(tmp_path / "d"), [fx.params()], final_err=7.0)
    assert not lua["chainer"] and "paper protocol with recipe lua" in lua["chainer_note"]


def test_no_chainer_caption_says_why(tmp_path):
    root = str(tmp_path / "smoke40study")
    p = fx.params(protocol="smoke", device="cpu", torch="local")
    fx.write_cell(root, p, final_err=60.0, config=fx.recipe_config("chainer"))
    curves = section_text(render_study(root, [p]), "curves")
    assert "no chainer reference overlaid (our cells: protocol smoke (3 epochs)" in curves
    assert "chainer reference overlaid (digitized" not in curves


def test_a_seed_without_data_identity_is_not_compared_and_spoils_the_all_official_banner(
    tmp_path,
):
    root = str(tmp_path / "unidentstudy")
    cells = [fx.params(seed=s) for s in range(3)]
    for s, p in enumerate(cells):
        fx.write_cell(root, p, final_err=7.0 + 0.05 * s, identity="official" if s < 2 else None)
    report = render_study(root, cells, [cells[0]])
    assert pd.isna(report["runs"].set_index("seed").loc["2", "dataset_identity"])
    assert report["page"].table("comparison-table") == []
    assert "trained on official + unidentified data" in section_text(report, "comparison")
    texts = [b["text"] for b in report["page"].banners]
    assert not any(t.startswith("All cells trained on the official") for t in texts)
    assert any("1 cell with results recorded no dataset identity" in t for t in texts)


# --- finding 6: the gradient stage beside the verdict -------------------------------------------


def test_a_failed_gradient_stage_is_marked_in_the_comparison(tmp_path):
    root = str(tmp_path / "gradfailstudy")
    cells = [fx.params(seed=s) for s in range(3)]
    for s, p in enumerate(cells):
        fx.write_cell(root, p, final_err=7.0 + 0.05 * s)
    report = render_study(root, cells, [cells[0]], {fx.env_id(cells[0]): ("fail", 3.2)})
    marks = [
        c for c in report["page"].table("comparison-table") if "gradient stage: fail" in c["text"]
    ]
    assert len(marks) == 1  # beside the verdict of the paper's row
    passed = render_study(root, cells, [cells[0]])  # the same cells, their stage passed
    assert len(comparison_rows(passed)["densenet40-k12 \u00b7 C10"][6::4]) == 1  # still compared
    assert "gradient stage: fail" not in passed["html"]


# --- findings 7 and 8: incomplete pairs, canary counts ------------------------------------------


@pytest.fixture(scope="module")
def matrix_runs(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("vm") / "matrixstudy")
    manifest, _ = fx.build_matrix_study(root)
    tables = aggregate.aggregate(study.from_manifest(manifest))
    return add_labels(tables.runs), tables


def test_delta_summaries_name_incomplete_pairs(matrix_runs):
    runs, _ = matrix_runs
    summary = {
        (s["group"], s["context"]): s for s in sections.axis_deltas(runs, "cudnn")["summary"]
    }
    diverged = summary[("densenet40-k12 \u00b7 C10", "torch 2.4 \u00b7 TF32 off")]
    assert diverged["n"] == 2 and diverged["note"] == "1 pair incomplete: off diverged (seed 2)"
    skipped = summary[("densenet-bc100-k12 \u00b7 C10+", "torch 1.13 \u00b7 TF32 off")]
    assert skipped["n"] == 0 and skipped["note"] == (
        "3 pairs incomplete: off skipped (seeds 0, 1); on running + off skipped (seed 2)"
    )


def test_canary_environments_are_counted_apart(matrix_runs):
    _, tables = matrix_runs
    counts = sections.verdict_counts({"blocks": [], "not_compared": []}, tables.envs)
    assert "fail" not in counts["stage"] and counts["canary"] == {"detected": 1}
    missed = tables.envs.assign(
        verdict=np.where(tables.envs["canary"] == "noncontig-grad", "pass", tables.envs["verdict"])
    )
    counts = sections.verdict_counts({"blocks": [], "not_compared": []}, missed)
    assert counts["canary"] == {"NOT detected (harness failure)": 1}


def test_the_header_shows_canary_detection(tmp_path):
    root = str(tmp_path / "canarystudy")
    clean = fx.params()
    bug = dict(clean, canary="noncontig-grad")
    fx.write_cell(root, clean)
    fx.write_cell(root, bug, final_err=90.0)
    report = render_study(root, [clean, bug], [clean, bug], {fx.env_id(bug): ("fail", 80.0)})
    assert header(report, "gradient stage") == "1 pass; canary: 1 detected"
    missed = render_study(root, [clean, bug], [clean, bug], {fx.env_id(bug): ("pass", 1e-6)})
    stage = header(missed, "gradient stage")
    assert stage == "1 pass; canary: 1 NOT detected (harness failure)"
    assert 'class="badge s-failed">1 NOT detected' in missed["html"]


# --- findings 9 and 10: labels and the gradient rule ------------------------------------------


def test_group_labels_name_non_official_data_for_every_seed(tmp_path):
    root = str(tmp_path / "jpegstudy")
    cells = [fx.params(seed=s) for s in range(3)]
    for p in cells[:2]:
        fx.write_cell(root, p, identity="cifar10-jpeg75")
    runs, _ = tables_of(root, cells)  # seed 2 is missing: no identity recorded
    assert set(runs["group"]) == {"densenet40-k12 \u00b7 C10 [jpeg75]"}
    official = str(tmp_path / "officialstudy")
    fx.write_cell(official, cells[0])
    runs, _ = tables_of(official, cells[:1])
    assert set(runs["group"]) == {"densenet40-k12 \u00b7 C10"}


def test_the_gradient_rule_is_stated_in_full(tmp_path):
    text = section_text(render_study(str(tmp_path / "empty"), [], []), "gradients")
    rule = text.split("Verdict (densenet/gradcheck/stage.py):")[1].split("No gradient-stage")[0]
    numbers = {float(x) for x in re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", rule)}
    assert {gradcheck.FP32_MAX, gradcheck.TF32_ABSURD} <= numbers
    assert "non-finite gradient" in rule and "dense-layer gradcheck" in rule
    assert "reduced-precision" in rule and "Determinism is recorded, never part" in rule


def test_an_implementation_variant_without_a_recipe_is_no_comparison():
    # A cell that recorded no recipe is taken as lua: an implementation variant of it
    # (--augment-order bamos, --bias on) ran no reference's recipe, so nothing compares it.
    variant = paper_runs(augment="on", dropout=0.0, augment_order="bamos")
    assert references.not_comparable(variant) == (
        "recipe not recorded (taken as lua): augment_order bamos, the paper uses official"
    )
    assert "bias on, the paper uses off" in references.not_comparable(paper_runs(bias="on"))
    # The paper's values keep the paper's rows, and only those.
    refs = references.references_for(references.published(), "densenet-bc100-k12", "cifar10", "on")
    plain = paper_runs(augment="on", dropout=0.0)
    assert references.not_comparable(plain) is None
    assert set(references.rows_for(refs, plain)["source"]) == {"paper"}
