"""Evaluation helpers: real data readers, accuracy and ties, checkpoint sweeps on the local hub, card model-index."""

import csv

import pytest

from hub_tools.errors import BabyhubError
from hub_tools.evaluation import (
    MinpairsResult,
    blimp_eval_result,
    evaluate_blimp,
    evaluate_minpairs,
    merge_eval_results,
    minpairs_eval_result,
    plot_sweep,
    read_blimp_suite,
    read_minpairs_data,
    write_sweep_csv,
)
from hub_tools.hub.revisions import list_revisions
from hub_tools.scoring import Scorer, compare_pairs
from tests.conftest import BLIMP_DIR, LEN_PAIRS


def write_eval_csv(path, n_rows, start=18000):
    """A CSV in the published format holding `n_rows` real evaluation rows (from row `start`)."""
    with LEN_PAIRS.open(newline="") as src, path.open("w", newline="") as dst:
        reader, writer = csv.reader(src), csv.writer(dst)
        writer.writerow(next(reader))
        for i, row in enumerate(reader):
            if start <= i < start + n_rows:
                writer.writerow(row)
    return path


@pytest.fixture(scope="module")
def scorer(tiny_baby):
    return Scorer.from_pretrained(str(tiny_baby))


def test_read_blimp_suite_reads_the_real_paradigms_in_pairs(tmp_path):
    suite = read_blimp_suite(BLIMP_DIR)
    assert len(suite) == 67
    good, bad = suite["adjunct_island"]
    assert len(good) == len(bad) == 1000
    assert good[0] == "Who should Derek hug after shocking Richard?"
    assert bad[0] == "Who should Derek hug Richard after shocking?"
    assert read_blimp_suite(BLIMP_DIR, lower_case=True)["adjunct_island"][0][0] == good[0].lower()
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "broken.txt").write_text("A dog barks.\nA dog bark.\nA cat sleeps.\n")
    with pytest.raises(BabyhubError, match=r"broken.txt: 3 lines, an odd number"):
        read_blimp_suite(odd)
    with pytest.raises(BabyhubError, match="no <paradigm>.txt files"):
        read_blimp_suite(tmp_path / "missing")


def test_read_minpairs_data_from_csv_and_dataset_folder(tmp_path, small_train_dir):
    data = read_minpairs_data(str(write_eval_csv(tmp_path / "eval.csv", 5)))
    assert data.name == "eval" and len(data.prompts) == 5
    assert data.prompts[0].startswith("*MOT:") and data.chosen[0].startswith("*CHI:")
    folder = read_minpairs_data(str(small_train_dir))
    assert len(folder.prompts) == 200 and folder.name == small_train_dir.name
    with pytest.raises(BabyhubError, match="file not found"):
        read_minpairs_data(str(tmp_path / "nope.csv"))


def test_ties_count_as_wrong_and_are_reported():
    result = compare_pairs([-1.0, -2.0, -3.0, -4.0], [-2.0, -2.0, -1.0, -5.0], margins=True)
    assert result == {"accuracy": 0.5, "n": 4, "ties": 1, "margins": [1.0, 0.0, -2.0, 1.0]}
    with pytest.raises(ValueError, match="no pairs"):
        compare_pairs([], [])


def test_identical_answers_tie_in_an_evaluation(scorer, tmp_path):
    data = read_minpairs_data(str(write_eval_csv(tmp_path / "eval.csv", 6)))
    data.rejected[:2] = data.chosen[:2]  # two pairs whose answers are the same text
    for method in ("sequence_mean", "answer_sum"):
        result = evaluate_minpairs(scorer, data, method, progress=False)
        assert result.ties == 2 and result.n == 6 and result.accuracy <= 4 / 6


def test_blimp_accuracy_is_the_macro_average_of_paradigms(scorer, tmp_path):
    suite = read_blimp_suite(BLIMP_DIR, lower_case=True)
    small = {name: (good[:40], bad[:40]) for name, (good, bad) in list(suite.items())[:3]}
    small["tiny"] = (small["adjunct_island"][0][:4], small["adjunct_island"][1][:4])
    result = evaluate_blimp(scorer, small, progress=False)
    assert result.n == 124 and set(result.paradigms) == set(small)
    assert result.accuracy == pytest.approx(sum(result.paradigms.values()) / 4)
    # All paradigms are scored in one call; each accuracy is still that of its own pairs scored alone.
    for name, pairs in small.items():
        good, bad = scorer.pair_sequence_scores(*pairs, reduction="sum", bow_correction=True)
        assert result.paradigms[name] == sum(g > b for g, b in zip(good, bad, strict=True)) / len(good), name
    with pytest.raises(BabyhubError, match="sequence method"):
        evaluate_blimp(scorer, small, "answer_sum", progress=False)
    with pytest.raises(BabyhubError, match="BLiMP paradigm tiny: 4 grammatical and 3 ungrammatical"):
        evaluate_blimp(scorer, {**small, "tiny": (small["tiny"][0], small["tiny"][1][:3])}, progress=False)
    with pytest.raises(BabyhubError, match="BLiMP paradigm tiny, pair 1: the ungrammatical sentence is empty"):
        evaluate_blimp(scorer, {**small, "tiny": (small["tiny"][0], ["a b .", " ", "c .", "d ."])}, progress=False)


def test_list_revisions_orders_checkpoints_by_step_and_main_last(local_hub, tiny_baby, tmp_path):
    from hub_tools.hub.publish import push_files, push_folder

    repo = "babyhub/eval-list-revisions"
    push_folder(tiny_baby, repo)
    for branch in ("checkpoint-12", "checkpoint-4", "experiment"):
        push_folder(tiny_baby, repo, revision=branch)
    assert [(r.name, r.step) for r in list_revisions(repo)] == [
        ("checkpoint-4", 4),
        ("checkpoint-12", 12),
        ("main", None),
    ]
    # train_dpo.py saves trainer_state.json on main: then main is placed by its step.
    push_files({"trainer_state.json": b'{"global_step": 8, "log_history": []}'}, repo)
    assert [r.name for r in list_revisions(repo)] == ["checkpoint-4", "main", "checkpoint-12"]
    with pytest.raises(BabyhubError, match="model repo babyhub/eval-no-such-repo not found"):
        list_revisions("babyhub/eval-no-such-repo")


def test_sweep_table_and_plot(tmp_path):
    rows = [
        {"model": "m", "revision": r, "step": s, "dataset": "eval", "method": "sequence_mean", "accuracy": a,
         "ci95_low": a - 0.02, "ci95_high": a + 0.02, "n": 400}
        for r, s, a in (("checkpoint-2", 2, 0.51), ("checkpoint-4", 4, 0.55), ("main", None, 0.56))
    ]  # fmt: skip
    table = write_sweep_csv(rows, tmp_path / "out" / "sweep.csv")
    with table.open() as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == [
        "model", "revision", "step", "dataset", "method", "accuracy", "ci95_low", "ci95_high", "n"
    ]  # fmt: skip
    assert [(r["revision"], r["step"], r["accuracy"]) for r in read] == [
        ("checkpoint-2", "2", "0.51"),
        ("checkpoint-4", "4", "0.55"),
        ("main", "", "0.56"),
    ]
    import matplotlib.image

    (png, svg) = plot_sweep(read, tmp_path / "out" / "sweep", title="m", formats=["png", "svg"], steps_per_epoch=2)
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 300 and image.shape[1] > 600
    assert image[..., :3].std() > 0.05  # something is drawn
    text = svg.read_text()
    assert "accuracy (share of pairs right)" in text and "epoch (passes over the training pairs)" in text
    assert "95 % interval" in text


def test_merge_eval_results_touches_only_the_model_index():
    card = (
        "---\nlanguage: en\nlicense: apache-2.0\ntags:\n- babylm\nmodel-index:\n- name: baby\n  results:\n"
        "  - task:\n      type: text-generation\n    dataset:\n      name: other\n      type: other\n"
        "    metrics:\n    - type: perplexity\n      value: 12.5\n---\n\n# Baby\n\nSome *text* that stays.\n"
    )
    first = MinpairsResult("child-dpo-preferences-eval", "sequence_mean", 0.61234, 100, 0)
    merged = merge_eval_results(card, [minpairs_eval_result(first)], model_name="baby")
    from huggingface_hub import ModelCard

    before, after = ModelCard(card), ModelCard(merged)
    assert after.text == before.text
    assert {k: v for k, v in after.data.to_dict().items() if k != "model-index"} == {
        k: v for k, v in before.data.to_dict().items() if k != "model-index"
    }
    assert [(r.dataset_name, r.metric_value) for r in after.data.eval_results] == [
        ("other", 12.5),
        ("child-dpo-preferences-eval", 0.6123),
    ]
    # The same metric again replaces its value; another method or BLiMP adds an entry.
    again = MinpairsResult("child-dpo-preferences-eval", "sequence_mean", 0.7, 100, 0)
    other_method = MinpairsResult("child-dpo-preferences-eval", "answer_sum", 0.65, 100, 0)
    from hub_tools.evaluation import BlimpResult

    blimp = blimp_eval_result(BlimpResult("sequence_sum_bow", 0.58, 2000, {}))
    merged = merge_eval_results(
        merged, [minpairs_eval_result(again), minpairs_eval_result(other_method), blimp], model_name="baby"
    )
    values = [(r.dataset_name, r.metric_config, r.metric_value) for r in ModelCard(merged).data.eval_results]
    assert values == [
        ("other", None, 12.5),
        ("child-dpo-preferences-eval", "sequence_mean", 0.7),
        ("child-dpo-preferences-eval", "answer_sum", 0.65),
        ("BLiMP", "sequence_sum_bow", 0.58),
    ]


def test_one_sweep_scores_each_revision_dataset_and_method(tiny_baby, tmp_path):
    from hub_tools.branches import Revision
    from hub_tools.evaluation import EvalModel, evaluate_revisions, head_of_suite, push_results, select_revisions

    data = read_minpairs_data(str(write_eval_csv(tmp_path / "eval.csv", 12)))
    suite = read_blimp_suite(BLIMP_DIR, lower_case=True)
    suite = head_of_suite({name: suite[name] for name in list(suite)[:2]}, 6)
    model = EvalModel(str(tiny_baby), batch_size=16)
    revisions = select_revisions(model)
    assert revisions == [Revision("main")]
    # Without methods, each dataset is scored with its own default.
    rows = evaluate_revisions(model, revisions, [data, suite], progress=False)
    assert [(r.model, r.revision.name, r.result.dataset, r.result.method) for r in rows] == [
        (str(tiny_baby), "main", "eval", "sequence_mean"),
        (str(tiny_baby), "main", "blimp", "sequence_sum_bow"),
    ]
    scorer = model.load(revisions[0])
    assert rows[0].result == evaluate_minpairs(scorer, data, progress=False)
    assert rows[1].result == evaluate_blimp(scorer, suite, progress=False)
    # Each pair's margin is kept (for intervals and paired comparisons), but not in the flat record.
    margins = rows[0].result.margins
    assert len(margins) == 12 and sum(m > 0 for m in margins) / 12 == rows[0].result.accuracy
    assert rows[0].result.outcomes == [m > 0 for m in margins]
    assert {len(m) for m in rows[1].result.margins.values()} == {6}
    assert "margins" not in rows[0].record() and rows[0].record()["ties"] == rows[0].result.ties
    # The records' keys are stable: the sharded sweep and the CSV read them.
    assert list(rows[0].record()) == [
        "model", "revision", "step", "dataset", "method", "accuracy", "n", "ties", "ci95_low", "ci95_high", "interval"
    ]  # fmt: skip
    assert list(rows[1].record()) == [
        "model", "revision", "step", "method", "accuracy", "n", "paradigms", "dataset", "ci95_low", "ci95_high",
        "interval", "paradigm_ci95",
    ]  # fmt: skip
    from hub_tools.stats import accuracy_interval, macro_accuracy_interval

    own = accuracy_interval(rows[0].result.outcomes)
    assert (rows[0].result.ci95_low, rows[0].result.ci95_high) == (own.ci95_low, own.ci95_high)
    by_paradigm = {name: [m > 0 for m in ms] for name, ms in rows[1].result.margins.items()}
    macro = macro_accuracy_interval(by_paradigm)
    assert (rows[1].result.ci95_low, rows[1].result.ci95_high) == (macro.ci95_low, macro.ci95_high)
    # The CSV takes the rows as they come.
    table = write_sweep_csv(rows, tmp_path / "sweep.csv")
    with table.open() as f:
        assert [(r["dataset"], r["method"]) for r in csv.DictReader(f)] == [
            ("eval", "sequence_mean"),
            ("blimp", "sequence_sum_bow"),
        ]
    # A method that cannot score a dataset fails before any model is loaded (this one does not exist).
    with pytest.raises(BabyhubError, match="method 'answer_sum' cannot score BLiMP: use one of sequence_mean"):
        evaluate_revisions(EvalModel("babyhub/no-such-model"), revisions, [data, suite], ["answer_sum"])
    with pytest.raises(BabyhubError, match=f"{tiny_baby} is a local folder, which has no revisions"):
        select_revisions(model, every=True)
    with pytest.raises(BabyhubError, match="is a local folder, which has no card on the Hub"):
        push_results(rows)


def test_compare_rows_pairs_outcomes_and_refuses_rows_of_other_pairs():
    from hub_tools.branches import Revision
    from hub_tools.evaluation import BlimpResult, EvalRow, compare_rows
    from hub_tools.stats import compare_paired

    def row(model, margins, dataset="eval", method="sequence_mean"):
        accuracy = sum(m > 0 for m in margins) / len(margins)
        return EvalRow(model, Revision("main"), MinpairsResult(dataset, method, accuracy, len(margins), 0,
                                                                margins=margins))  # fmt: skip

    a, b = row("a", [1.0, 1.0, -1.0, 2.0, 0.0]), row("b", [-1.0, 1.0, -1.0, -2.0, 1.0])
    comparison = compare_rows(a, b)
    assert comparison.paired == compare_paired([True, True, False, True, False], [False, True, False, False, True])
    record = comparison.record()
    assert (record["difference"], record["a_right_b_wrong"], record["a_wrong_b_right"]) == (0.2, 2, 1)
    assert record["accuracy_a"] == 0.6 and record["ci95_low_a"] == a.result.ci95_low
    with pytest.raises(
        BabyhubError, match=r"cannot compare a on eval \(sequence_mean\) with b on other \(sequence_mean"
    ):
        compare_rows(a, row("b", [1.0] * 5, dataset="other"))
    with pytest.raises(BabyhubError, match="same method"):
        compare_rows(a, row("b", [1.0] * 5, method="answer_sum"))
    with pytest.raises(BabyhubError, match="cannot compare a and b on eval: 5 and 4 per-pair outcomes"):
        compare_rows(a, row("b", [1.0] * 4))
    no_margins = EvalRow("c", Revision("main"), MinpairsResult("eval", "sequence_mean", 0.5, 4, 0))
    with pytest.raises(BabyhubError, match="results read back from a CSV have none"):
        compare_rows(no_margins, no_margins)
    # BLiMP: pooled over paradigms; refused when the paradigms differ.
    blimp_a = EvalRow("a", Revision("main"), BlimpResult("sequence_sum_bow", 0.5, 4, {"x": 0.5, "y": 0.5},
                                                         {"x": [1.0, -1.0], "y": [1.0, -1.0]}))  # fmt: skip
    blimp_b = EvalRow("b", Revision("main"), BlimpResult("sequence_sum_bow", 0.5, 4, {"x": 0.5, "z": 0.5},
                                                         {"x": [1.0, -1.0], "z": [-1.0, 1.0]}))  # fmt: skip
    with pytest.raises(BabyhubError, match="cannot compare BLiMP results of a and b: their paradigms differ"):
        compare_rows(blimp_a, blimp_b)
    assert compare_rows(blimp_a, blimp_a).record()["pooled_equals_macro"] is True


def test_steps_per_epoch_come_from_the_trainer_state(tmp_path):
    from hub_tools.evaluation import read_steps_per_epoch

    assert read_steps_per_epoch(str(tmp_path), []) is None  # no trainer state: no epoch axis
    (tmp_path / "trainer_state.json").write_text('{"global_step": 450, "epoch": 0.4}')
    assert read_steps_per_epoch(str(tmp_path), []) == pytest.approx(1125.0)
