"""The `dialogue_minpairs` metric: doctests, equality with `babyhub eval minpairs`, the widget, and loading it
from a Space on the local hub in an environment without babyhub."""

import doctest
import json
import os
import subprocess
import sys
import textwrap

import pytest

from hub_tools.cli import main
from hub_tools.paths import SPACES
from hub_tools.scoring import LEGACY_METHODS, METHODS
from tests.test_evaluation import write_eval_csv

METRIC_DIR = SPACES / "dialogue_minpairs"
N_ROWS = 40


@pytest.fixture(scope="module")
def metric():
    import evaluate

    return evaluate.load(str(METRIC_DIR))


@pytest.fixture(scope="module")
def eval_rows(tmp_path_factory):
    from hub_tools.evaluation import read_minpairs_data

    path = write_eval_csv(tmp_path_factory.mktemp("metric-data") / "eval40.csv", N_ROWS)
    return path, read_minpairs_data(str(path))


def test_metric_doctests_pass(metric, tiny_baby):
    module = sys.modules[type(metric).__module__]
    result = doctest.testmod(module, extraglobs={"metric": metric, "baby": str(tiny_baby)}, verbose=False)
    assert result.attempted >= 8 and result.failed == 0


def test_widget_offers_every_method_of_the_metric():
    import importlib.util

    spec = importlib.util.spec_from_file_location("dialogue_minpairs_app_methods", METRIC_DIR / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    assert app.metric_methods() == [*METHODS, *LEGACY_METHODS]


def test_metric_accuracy_equals_babyhub_eval_for_every_method(metric, tiny_baby, eval_rows, capsys):
    path, data = eval_rows
    methods = [*METHODS, *LEGACY_METHODS]
    argv = ["eval", "minpairs", "--model", str(tiny_baby), "--data", str(path), "--json", "--method", *methods]
    assert main(argv) == 0
    cli = {r["method"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert set(cli) == set(methods)
    for method in methods:
        result = metric.compute(
            prompt=data.prompts,
            chosen=data.chosen,
            rejected=data.rejected,
            model_id=str(tiny_baby),
            method=method,
            batch_size=16,
        )
        expected = {key: cli[method][key] for key in ("accuracy", "ci95_low", "ci95_high", "ties")}
        assert result == {**expected, "n": N_ROWS}, method
        assert list(result) == ["accuracy", "ci95_low", "ci95_high", "n", "ties"]


def test_metric_refuses_bad_arguments(metric, tiny_baby):
    pair = {"prompt": ["*MOT: hi ."], "chosen": ["*CHI: hi ."], "rejected": ["*CHI: no ."]}
    with pytest.raises(ValueError, match="needs model_id"):
        metric.compute(**pair)
    with pytest.raises(ValueError, match="method must be one of"):
        metric.compute(**pair, model_id=str(tiny_baby), method="perplexity")
    with pytest.raises(ValueError, match=r"chosen\[0\] is empty or whitespace-only"):
        metric.compute(prompt=["*MOT: hi ."], chosen=["  "], rejected=["*CHI: no ."], model_id=str(tiny_baby))


def test_widget_computes_through_gradio(tiny_baby, eval_rows, metric):
    import importlib.util

    from gradio_client import Client

    spec = importlib.util.spec_from_file_location("dialogue_minpairs_app", METRIC_DIR / "app.py")
    app = importlib.util.module_from_spec(spec)  # a unique name: the chat Space has an app.py too
    spec.loader.exec_module(app)
    _, data = eval_rows
    rows = [[p, c, r] for p, c, r in zip(data.prompts[:5], data.chosen[:5], data.rejected[:5], strict=True)]
    expected = metric.compute(
        prompt=data.prompts[:5],
        chosen=data.chosen[:5],
        rejected=data.rejected[:5],
        model_id=str(tiny_baby),
        method="answer_mean",
        return_margins=True,
    )
    demo = app.build_demo()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        table = {"headers": app.COLUMNS, "data": rows + [["", "", ""]]}
        result, per_pair = client.predict(str(tiny_baby), "", "answer_mean", table, api_name="/compute")
        assert result == {k: expected[k] for k in ("accuracy", "ci95_low", "ci95_high", "n", "ties")}
        assert [row[3] for row in per_pair["data"]] == [round(m, 4) for m in expected["margins"]]
        with pytest.raises(Exception, match="Row 1: fill in rejected"):
            client.predict(
                str(tiny_baby),
                "",
                "answer_mean",
                {"headers": app.COLUMNS, "data": [rows[0][:2] + [""]]},
                api_name="/compute",
            )
    finally:
        demo.close()


def test_metric_loads_from_a_space_on_the_local_hub_without_babyhub(local_hub, tiny_baby, eval_rows, metric, tmp_path):
    from hub_tools.spaces import push_space

    result = push_space(METRIC_DIR, "babyhub/dialogue_minpairs")
    assert result.repo_type == "space"
    _, data = eval_rows
    pairs = {"prompt": data.prompts[:12], "chosen": data.chosen[:12], "rejected": data.rejected[:12]}
    expected = metric.compute(**pairs, model_id=str(tiny_baby), method="sequence_sum_bow")
    # A fresh process, a fresh cache, no babyhub: only evaluate, transformers and torch can be imported.
    script = textwrap.dedent(
        """
        import json, sys
        class NoBabyhub:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("hub_tools", "minicons", "gradio", "trl"):
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, NoBabyhub())
        import evaluate
        metric = evaluate.load("babyhub/dialogue_minpairs")
        pairs, model = json.loads(sys.argv[1]), sys.argv[2]
        print(json.dumps(metric.compute(**pairs, model_id=model, method="sequence_sum_bow")))
        """
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "PYTHONPATH": ""}
    run = subprocess.run(
        [sys.executable, "-c", script, json.dumps(pairs), str(tiny_baby)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == expected
