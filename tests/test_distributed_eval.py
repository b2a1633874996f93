"""The evaluation sweep on two processes (torchrun, gloo, one thread each) has the rows of a one-process sweep.

A model repo on the local hub with three revisions of different weights, two minimal-pair datasets of real
evaluation rows scored with two methods (12 units) and a small real BLiMP suite (3 units); the workers run
`evaluate_revisions` as the CLI handlers do (tests/distributed_worker.py).
"""

import json
import re
import shutil
from pathlib import Path

import pytest

from hub_tools import distributed
from hub_tools.errors import BabyhubError
from hub_tools.evaluation import EvalModel, evaluate_revisions, read_blimp_suite, read_minpairs_data, select_revisions
from hub_tools.evaluation.distributed import plan_units
from tests.conftest import BLIMP_DIR
from tests.distributed_worker import launch, rank_output
from tests.test_evaluation import write_eval_csv

REPO = "babyhub/distributed-eval-sweep"
METHODS = ["sequence_mean", "answer_sum"]


@pytest.fixture(scope="module")
def sweep_repo(local_hub, tiny_baby, tmp_path_factory):
    """main = the tiny baby; checkpoint-10 and checkpoint-20 = the baby with its weights jittered (other rows)."""
    import torch
    from transformers import AutoModelForCausalLM

    from hub_tools.hub.publish import push_folder

    push_folder(tiny_baby, REPO)
    for branch, seed in (("checkpoint-10", 1), ("checkpoint-20", 2)):
        folder = tmp_path_factory.mktemp(branch) / "baby"
        shutil.copytree(tiny_baby, folder)
        model = AutoModelForCausalLM.from_pretrained(folder)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
        model.save_pretrained(folder)
        push_folder(folder, REPO, revision=branch)
    return REPO


@pytest.fixture(scope="module")
def sweep_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed-eval")
    csvs = [write_eval_csv(folder / "eval48.csv", 48), write_eval_csv(folder / "eval24.csv", 24, start=18100)]
    suite = folder / "blimp"
    suite.mkdir()
    for name in ("anaphor_number_agreement", "causative"):
        lines = (BLIMP_DIR / f"{name}.txt").read_text().splitlines()[:40]
        (suite / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return csvs, suite


def records(rows) -> list[dict]:
    return [{**row.record(), "margins": row.result.margins} for row in rows]


def loads(stderr: str) -> list[str]:
    return re.findall(rf"loading {REPO} at (\S+)", stderr)


def test_two_processes_give_the_rows_of_one(sweep_repo, sweep_inputs, tmp_path):
    csvs, suite = sweep_inputs
    out = tmp_path / "rows.json"
    args = ["eval", "--model", sweep_repo, "--all-revisions", "--data", *map(str, csvs), "--method", *METHODS]
    result = launch(2, tmp_path / "logs", *args, "--suite", str(suite), "--json-out", str(out))
    assert result.returncode == 0, result.stderr
    got = json.loads(out.read_text())
    # One process, here, with the same scorer settings.
    model = EvalModel(sweep_repo, workers=1)
    revisions = select_revisions(model, every=True)
    minpairs = evaluate_revisions(
        model, revisions, [read_minpairs_data(str(c)) for c in csvs], METHODS, progress=False
    )
    blimp = evaluate_revisions(model, revisions, [read_blimp_suite(suite, lower_case=True)], progress=False)
    assert got["minpairs"] == records(minpairs)  # every field and every margin, in the same order
    assert got["blimp"] == records(blimp)
    assert [(r["revision"], r["dataset"], r["method"]) for r in got["minpairs"]][:4] == [
        ("checkpoint-10", "eval48", "sequence_mean"),
        ("checkpoint-10", "eval48", "answer_sum"),
        ("checkpoint-10", "eval24", "sequence_mean"),
        ("checkpoint-10", "eval24", "answer_sum"),
    ]
    assert len({tuple(r["margins"]) for r in got["minpairs"]}) == 12  # the revisions differ: order is checked
    # Each process loaded only the revisions of its contiguous share, each once per sweep (pair-weighted: units
    # 0-4 and 5-11 of the minimal pairs, units 0 and 1-2 of BLiMP); only the main process wrote or printed.
    logs = rank_output(tmp_path / "logs")
    assert loads(logs[0]["stderr"]) == ["checkpoint-10", "checkpoint-20", "checkpoint-10"]
    assert loads(logs[1]["stderr"]) == ["checkpoint-20", "main", "checkpoint-20", "main"]
    assert logs[0]["stdout"] == logs[1]["stdout"] == ""


def cli_json(capsys, *argv) -> dict:
    from hub_tools.cli import main

    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_the_eval_minpairs_command_on_two_processes(capsys, sweep_repo, sweep_inputs, tmp_path):
    """`torchrun --nproc_per_node 2 -m hub_tools eval minpairs --all-revisions --push-results`: the main process alone
    prints, writes the CSV and the plot and pushes each card once; the results are a one-process run's."""
    from huggingface_hub import HfApi

    csvs, _ = sweep_inputs
    api = HfApi()
    revisions = ("main", "checkpoint-10", "checkpoint-20")
    before = {r: len(api.list_repo_commits(sweep_repo, revision=r)) for r in revisions}
    args = ["eval", "minpairs", "--model", sweep_repo, "--all-revisions", "--data", *map(str, csvs),
            "--method", *METHODS, "--push-results", "--json"]  # fmt: skip
    two, one = tmp_path / "two", tmp_path / "one"
    result = launch(2, tmp_path / "logs", *args, "--output-dir", str(two), cli=True)
    assert result.returncode == 0, result.stderr
    logs = rank_output(tmp_path / "logs")
    assert logs[1]["stdout"] == ""
    got = json.loads(logs[0]["stdout"])
    assert sorted(p.name for p in two.iterdir()) == [Path(got["csv"]).name, Path(got["plot"]).name]
    # every card pushed once, by the main process
    assert {r: len(api.list_repo_commits(sweep_repo, revision=r)) for r in revisions} == {
        r: n + 1 for r, n in before.items()
    }
    # One process, here: the same records (accuracy, interval, ties, n), the same CSV, and cards that already hold
    # these results (the bounds included), so nothing is pushed.
    reference = cli_json(capsys, *args, "--output-dir", str(one))
    assert got["results"] == reference["results"] and len(got["results"]) == 12
    assert all(r["ci95_low"] < r["accuracy"] < r["ci95_high"] for r in got["results"])
    assert Path(got["csv"]).read_bytes() == Path(reference["csv"]).read_bytes()
    assert reference["pushed"] == dict.fromkeys(revisions, None)  # no change to any card
    assert all(
        n == before[r] + 1 for r, n in ((r, len(api.list_repo_commits(sweep_repo, revision=r))) for r in revisions)
    )


def test_the_eval_blimp_command_on_two_processes(capsys, sweep_repo, sweep_inputs, tmp_path):
    _, suite = sweep_inputs
    args = ["eval", "blimp", "--model", sweep_repo, "--all-revisions", "--suite", str(suite), "--lower-case", "--json"]
    result = launch(2, tmp_path / "logs", *args, "--output-dir", str(tmp_path / "two"), cli=True)
    assert result.returncode == 0, result.stderr
    logs = rank_output(tmp_path / "logs")
    assert logs[1]["stdout"] == ""
    got = json.loads(logs[0]["stdout"])
    reference = cli_json(capsys, *args, "--output-dir", str(tmp_path / "one"))
    # the macro-average's bootstrap interval and every paradigm's are the one-process run's
    assert got["results"] == reference["results"] and len(got["results"]) == 3
    assert Path(got["csv"]).read_bytes() == Path(reference["csv"]).read_bytes()
    assert len(list((tmp_path / "two").iterdir())) == 2


def test_eval_compare_is_refused_under_a_launcher(capsys, monkeypatch, tiny_baby, sweep_inputs):
    from hub_tools.cli import main

    csvs, _ = sweep_inputs
    monkeypatch.setenv("WORLD_SIZE", "2")
    argv = ["eval", "compare", "--model", str(tiny_baby), "--model", str(tiny_baby), "--data", str(csvs[1])]
    assert main(argv) == 2
    assert "eval compare runs in one process, not in each of 2 launched processes" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(BabyhubError, match="WORLD_SIZE='two' is not a number: start babyhub with torchrun"):
        distributed.current_processes()


def test_an_error_on_one_process_ends_every_process_with_its_message(sweep_repo, sweep_inputs, tmp_path):
    csvs, _ = sweep_inputs
    out = tmp_path / "rows.json"
    # Rank 0 gets checkpoint-999 (no such branch) and main; rank 1 gets checkpoint-10 and checkpoint-20.
    revisions = ["checkpoint-999", "main", "checkpoint-10", "checkpoint-20"]
    args = ["eval", "--model", sweep_repo, "--revisions", *revisions, "--data", str(csvs[1]), "--json-out", str(out)]
    result = launch(2, tmp_path / "logs", *args)
    assert result.returncode != 0 and not out.exists()
    logs = rank_output(tmp_path / "logs")
    message = f"could not load model {REPO} at revision checkpoint-999"
    assert f"error: {message}" in logs[0]["stderr"]
    assert re.search(rf"error: {message}.* \(on rank 0 of 2\)", logs[1]["stderr"], flags=re.S)
    # Rank 1 stopped after its first unit instead of scoring its whole share.
    assert loads(logs[1]["stderr"]) == ["checkpoint-10"]


@pytest.mark.parametrize(
    ("weights", "world_size", "shares"),
    [
        ([1] * 12, 2, [range(0, 6), range(6, 12)]),
        ([48, 48, 24, 24] * 3, 2, [range(0, 5), range(5, 12)]),
        ([1, 1, 1], 2, [range(0, 1), range(1, 3)]),
        ([5], 3, [range(0, 0), range(0, 1), range(1, 1)]),
        ([100, 1, 1, 1], 2, [range(0, 1), range(1, 4)]),
        ([0, 0, 0, 0], 2, [range(0, 2), range(2, 4)]),
        ([], 2, [range(0, 0), range(0, 0)]),
    ],
)
def test_contiguous_shares(weights, world_size, shares):
    got = distributed.contiguous_shares(weights, world_size)
    assert got == shares
    assert [i for share in got for i in share] == list(range(len(weights)))


def test_bad_methods_fail_before_any_load_on_every_process(tiny_baby, sweep_inputs, monkeypatch):
    csvs, suite = sweep_inputs
    data = [read_minpairs_data(str(csvs[1]))]
    model = EvalModel(str(tiny_baby), workers=1)
    revisions = select_revisions(model)
    one = distributed.Processes(0, 1)  # one process given explicitly is the plain sweep
    assert records(evaluate_revisions(model, revisions, data, progress=False, processes=one)) == records(
        evaluate_revisions(model, revisions, data, progress=False)
    )
    # The plan checks every method against every dataset, as the sweep does, before a model loads.
    monkeypatch.setattr(EvalModel, "load", lambda *_: pytest.fail("a model was loaded"))
    with pytest.raises(BabyhubError, match="method 'answer_sum' cannot score BLiMP"):
        plan_units(revisions, [*data, read_blimp_suite(suite)], ["answer_sum"])
    two = distributed.Processes(0, 2)  # no process group: the plan must fail before the first message
    with pytest.raises(BabyhubError, match="method 'answer_sum' cannot score BLiMP"):
        evaluate_revisions(model, revisions, [*data, read_blimp_suite(suite)], ["answer_sum"], processes=two)
