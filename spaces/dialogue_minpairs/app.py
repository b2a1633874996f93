"""The widget of the `dialogue_minpairs` metric Space (gradio 6).

evaluate 0.4.6's `launch_gradio_widget` does not work with gradio >= 4, so the widget is written here:
name a model, paste pairs into the table, compute. It loads the metric from the file beside it, which
works the same in the Space, in babyhub's Space bundle and in a checkout (`python spaces/dialogue_minpairs/app.py`).
"""

import os
import sys
from pathlib import Path

import evaluate
import gradio as gr

HERE = Path(__file__).resolve().parent
COLUMNS = ["prompt", "chosen", "rejected"]
EXAMPLE_ROWS = [
    ["*MOT: what is that ?", "*CHI: it looks like a gun .", "*CHI: you do it like that ."],
    ["*MOT: pull the string .", "*CHI: and where do they hook it ?", "*CHI: do you know what it was ?"],
    ["*MOT: do you want some juice ?", "*CHI: yes please .", "*CHI: the big one ."],
]
# The model the widget starts with; a Space sets it as a variable (no secret is involved).
DEFAULT_MODEL = os.environ.get("DIALOGUE_MINPAIRS_MODEL", "bbunzeck/another-llama")

_metric = None


def load_metric():
    """The metric, loaded once from dialogue_minpairs.py beside this file."""
    global _metric
    if _metric is None:
        _metric = evaluate.load(str(HERE / "dialogue_minpairs.py"))
    return _metric


def metric_methods() -> list[str]:
    """The scoring methods the metric accepts, read from its module (the scorer's METHODS and LEGACY_METHODS): the
    menu never drifts."""
    return list(sys.modules[type(load_metric()).__module__].ALL_METHODS)


def read_rows(table) -> list[list[str]]:
    """The filled rows of the table (a list of rows, or a DataFrame); a half-filled row is an error."""
    rows = table.values.tolist() if hasattr(table, "values") else list(table or [])
    filled = []
    for number, row in enumerate(rows, start=1):
        cells = [str(c).strip() if c is not None else "" for c in list(row)[:3]]
        if not any(cells):
            continue
        missing = [name for name, cell in zip(COLUMNS, cells, strict=False) if not cell]
        if len(cells) < 3 or missing:
            raise gr.Error(f"Row {number}: fill in {', '.join(missing) or 'all three columns'} (or clear the row).")
        filled.append(cells)
    if not filled:
        raise gr.Error("Add at least one pair: a prompt (*MOT: ...), the real answer and another answer (*CHI: ...).")
    return filled


def compute(model_id: str, revision: str, method: str, table):
    """Accuracy of the model on the table's pairs, and each pair's margin."""
    if not (model_id or "").strip():
        raise gr.Error("Name a model: a Hub id such as bbunzeck/another-llama.")
    rows = read_rows(table)
    try:
        result = load_metric().compute(
            prompt=[r[0] for r in rows],
            chosen=[r[1] for r in rows],
            rejected=[r[2] for r in rows],
            model_id=model_id.strip(),
            revision=(revision or "").strip() or None,
            method=method,
            return_margins=True,
        )
    except (OSError, ValueError) as err:
        raise gr.Error(str(err)) from err
    margins = result.pop("margins")
    per_pair = [
        [r[0], r[1], r[2], round(m, 4), "tie" if m == 0 else ("yes" if m > 0 else "no")]
        for r, m in zip(rows, margins, strict=True)
    ]
    return result, per_pair


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Dialogue minimal pairs") as demo:
        gr.Markdown(
            "# Dialogue minimal pairs\n"
            "Does the model score the child's **real** answer to a caregiver's turn higher than an answer taken "
            "from elsewhere? Accuracy counts strict wins; ties count as wrong. See the metric card for the methods."
        )
        with gr.Row():
            model_id = gr.Textbox(label="Model", value=DEFAULT_MODEL, scale=3)
            revision = gr.Textbox(label="Revision (optional)", placeholder="main or checkpoint-2000", scale=2)
            methods = metric_methods()
            method = gr.Dropdown(methods, value=methods[0], label="Method", scale=2)
        table = gr.Dataframe(
            value=EXAMPLE_ROWS,
            headers=COLUMNS,
            datatype="str",
            type="array",
            column_count=3,
            row_count=len(EXAMPLE_ROWS),
            interactive=True,
            label="Pairs (prompt, real answer, other answer)",
        )
        button = gr.Button("Compute", variant="primary")
        result = gr.JSON(label="Result")
        per_pair = gr.Dataframe(
            headers=[*COLUMNS, "margin", "correct"],
            type="array",
            interactive=False,
            label="Per pair",
        )
        button.click(compute, inputs=[model_id, revision, method, table], outputs=[result, per_pair])
    return demo


if __name__ == "__main__":
    build_demo().launch()
