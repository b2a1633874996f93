"""Baby chat: type what the mother says, see how the baseline baby and the DPO babies answer, and check which
of two child answers each model prefers.

Run it (the models come from BABYHUB_SPACE_MODELS, else models.yaml beside this file):

    BABYHUB_SPACE_MODELS=bbunzeck/another-llama,NS/baby-dpo@checkpoint-2000 python spaces/baby_chat/app.py
    GRADIO_SERVER_PORT=7861 babyhub space run --models path/to/baby,NS/baby-dpo

API (gradio_client): `/score` (mother, answer_a, answer_b) -> {model: {logp_a, logp_b, prefers, ...}};
`/add_turn` (mother) then `/answer_<i>` (history, revision, ...) streams column i's answer.
"""

import os
import sys
from pathlib import Path

# The helpers sit beside this file (and, in the Space bundle, the scorer too): import them from here
# whether the app runs as a script, is imported by a test, or is loaded by the Spaces runtime.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import babychat as bc  # noqa: E402
import gradio as gr  # noqa: E402

QUEUE_SIZE = int(os.environ.get("BABYHUB_SPACE_QUEUE_SIZE", "64"))  # waiting requests beyond this are refused
CPU_GROUP = "cpu"  # every event that runs a model shares one concurrency group, so CPU work never piles up

DESCRIPTION = """\
# Baby chat
Type what the mother says (`*MOT:`); every baby answers as the child (`*CHI:`) in its own column, with the
conversation so far as its prompt. The first column is the **baseline**; the others were fine-tuned with
DPO to prefer the child's real answers. The **Score** tab shows which of two answers each model prefers.
"""


def message_text(message: dict) -> str:
    """The text of a chat message, whether its content is a string or a list of content blocks (gradio 6)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return " ".join(block.get("text", "") for block in content or [] if isinstance(block, dict)).strip()


def plain_history(history: list[dict] | None) -> list[dict]:
    return [{"role": m["role"], "content": message_text(m)} for m in history or []]


def build_demo(
    config: bc.SpaceConfig, *, store: bc.ModelStore | None = None, concurrency: int | None = None
) -> gr.Blocks:
    """The Blocks app for `config`; models are loaded by `store` on first use and shared by every session."""
    store = store or bc.ModelStore()
    specs = config.models
    concurrency = concurrency or int(os.environ.get("BABYHUB_SPACE_CONCURRENCY", str(max(2, len(specs)))))
    revisions = [{r.name: r for r in bc.list_revisions(spec)} for spec in specs]
    try:
        examples = bc.read_examples(config)
    except Exception as err:  # examples are a convenience: never keep the Space from starting
        print(f"baby chat: no examples ({bc.redact(str(err))})", file=sys.stderr)
        examples = []
    cpu = {"concurrency_id": CPU_GROUP, "concurrency_limit": concurrency}
    light = {"concurrency_limit": None}

    def load(i: int, revision: str) -> bc.LoadedModel:
        if revision not in revisions[i]:
            raise gr.Error(f"{specs[i].label}: unknown revision {revision!r}; choose one of {list(revisions[i])}")
        try:
            return store.get(specs[i], revisions[i][revision])
        except Exception as err:
            raise gr.Error(bc.redact(f"{specs[i].label}@{revision}: cannot load the model: {err}")) from err

    def commit_note(i: int, revision: str) -> str:
        rev = revisions[i].get(revision)
        return f"`{specs[i].source}` @ `{revision}` → commit `{bc.short_commit(rev) if rev else '?'}`"

    # ---- Chat ---------------------------------------------------------------------------------------------
    def add_turn(line, *histories):
        turn, notice = bc.clean_line(line, bc.MOTHER_TAG)
        if not turn:  # empty input does nothing
            return (gr.skip(), gr.skip(), *[gr.skip()] * len(histories))
        if notice:
            gr.Warning(notice)
        message = {"role": "user", "content": turn}
        return ("", notice, *[plain_history(h) + [message] for h in histories])

    def make_answer(i: int):
        def answer(history, revision, mode, temperature, top_p, max_new_tokens, seed):
            history = plain_history(history)
            if not history or history[-1]["role"] != "user":  # nothing to answer: a no-op
                yield gr.skip(), gr.skip()
                return
            try:
                sampling = bc.Sampling(
                    do_sample=mode == "sample",
                    temperature=float(temperature),
                    top_p=float(top_p),
                    max_new_tokens=int(max_new_tokens),
                    seed=int(seed),
                )
            except (TypeError, ValueError) as err:
                raise gr.Error(f"Sampling settings: {err}") from err
            loaded = load(i, revision)
            prompt = bc.build_prompt(
                [m["content"] for m in history], loaded.tokenizer, max_tokens=loaded.context - sampling.max_new_tokens
            )
            notes = [f"answered by `{revision}` (commit `{bc.short_commit(revisions[i][revision])}`)"]
            if prompt.dropped_turns:
                notes.append(f"{prompt.dropped_turns} oldest turns left out to fit the context")
            if prompt.cut_tokens:
                notes.append(f"the line was cut by {prompt.cut_tokens} tokens to fit the context")
            history.append({"role": "assistant", "content": bc.CHILD_TAG})
            status = " · ".join(notes)
            answer_text = ""
            for answer_text in bc.stream_answer(loaded.model, loaded.tokenizer, prompt.ids, sampling):
                history[-1] = {"role": "assistant", "content": f"{bc.CHILD_TAG} {answer_text}"}
                yield history, status
            if not answer_text:
                yield history, f"{status} · the model ended its turn without a word"

        answer.__name__ = f"answer_{i}"
        return answer

    def make_select_revision(i: int):
        def select_revision(revision):
            loaded = load(i, revision)  # load now, so the next answer starts at once
            params = sum(p.numel() for p in loaded.model.parameters())
            return f"{commit_note(i, revision)} · {params / 1e6:.2f} M parameters"

        select_revision.__name__ = f"revision_{i}"
        return select_revision

    def refresh_revisions(*selected):
        """Read every column's branches again: checkpoints pushed since the Space started become choosable."""
        menus, notes = [], []
        for i, spec in enumerate(specs):
            try:
                fresh = {r.name: r for r in bc.list_revisions(spec)}
            except bc.SpaceConfigError as err:
                raise gr.Error(bc.redact(str(err))) from err
            revisions[i] = fresh  # one assignment: an answer running now sees the old or the new branches
            keep = selected[i] if selected[i] in fresh else bc.default_revision(spec, list(fresh.values()))
            menus.append(revision_dropdown(i, keep))
            notes.append(commit_note(i, keep))  # a branch may have moved on to a new commit
        return *menus, *notes

    def revision_dropdown(i: int, value: str, **layout) -> gr.Dropdown:
        """Column i's revision menu (in the layout), or an update of its choices (returned by an event)."""
        return gr.Dropdown(
            choices=[(f"{n} · {bc.short_commit(r)}", n) for n, r in revisions[i].items()],
            value=value,
            interactive=len(revisions[i]) > 1,
            **layout,
        )

    def drop_last_answers(*histories):
        out = []
        for h in histories:
            h = plain_history(h)
            out.append(h[:-1] if h and h[-1]["role"] == "assistant" else h)
        return tuple(out) if len(out) > 1 else out[0]

    # ---- Score ----------------------------------------------------------------------------------------------
    def score(mother, answer_a, answer_b, *selected):
        """Log p(answer | mother) of two child answers under every model, which one each prefers, and the
        implicit DPO reward (beta * (log pi - log pi_ref)) of the DPO models against the baseline."""
        fields = {"mother": mother, "answer_a": answer_a, "answer_b": answer_b}
        cleaned = {}
        for name, text in fields.items():
            tag = bc.MOTHER_TAG if name == "mother" else bc.CHILD_TAG
            cleaned[name], notice = bc.clean_line(text, tag)
            if notice:
                gr.Warning(f"{name}: {notice}")
        if not any(cleaned.values()):  # empty input: nothing to score
            return {}
        missing = [name for name, text in cleaned.items() if not text]
        if missing:
            raise gr.Error(f"Fill in {', '.join(missing)}: scoring needs a mother line and two child answers.")
        models = [load(i, rev) for i, rev in enumerate(selected)]
        return bc.score_answers(specs, models, cleaned["mother"], cleaned["answer_a"], cleaned["answer_b"])

    def score_table(result):
        rows = []
        for label, s in (result or {}).items():
            rows.append(
                [
                    label,
                    f"{s['revision']} ({(s['commit'] or 'local')[:7]})",
                    round(s["logp_a"], 3),
                    round(s["logp_b"], 3),
                    round(s["logp_per_token_a"], 3),
                    round(s["logp_per_token_b"], 3),
                    s["prefers"].upper(),
                    round(s["dpo_reward_a"], 3) if "dpo_reward_a" in s else None,
                    round(s["dpo_reward_b"], 3) if "dpo_reward_b" in s else None,
                ]
            )
        return rows

    # ---- Layout and events ------------------------------------------------------------------------------------
    with gr.Blocks(title="Baby chat") as demo:
        gr.Markdown(DESCRIPTION)
        rev_boxes = []
        with gr.Tab("Chat"):
            chatbots, dropdowns, statuses = [], [], []
            with gr.Row(equal_height=True):
                for i, spec in enumerate(specs):
                    with gr.Column(min_width=240):
                        role = "baseline" if i == 0 else f"DPO, β = {spec.beta:g}"
                        gr.Markdown(f"### {spec.label}\n{role}")
                        value = bc.default_revision(spec, list(revisions[i].values()))
                        dropdowns.append(
                            revision_dropdown(i, value, label=f"revision of {spec.label}", elem_id=f"revision-{i}")
                        )
                        rev_boxes.append(gr.Markdown(commit_note(i, value), elem_id=f"commit-{i}"))
                        chatbots.append(
                            gr.Chatbot(
                                label=spec.label,
                                height=340,
                                render_markdown=False,  # `*MOT:` is dialogue, not emphasis
                                feedback_options=None,
                                elem_id=f"chat-{i}",
                                elem_classes=["baby-column"],
                            )
                        )
                        statuses.append(gr.Markdown("", elem_id=f"status-{i}"))
            mother = gr.Textbox(
                label="*MOT: (what the mother says)",
                placeholder="what is that ?",
                lines=1,
                submit_btn="Say",
                elem_id="mother",
            )
            notice = gr.Markdown("", elem_id="notice")
            with gr.Row():
                stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                regen_btn = gr.Button("Regenerate", elem_id="regenerate")
                clear_btn = gr.Button("Clear", elem_id="clear")
                refresh_btn = gr.Button("Refresh revisions", elem_id="refresh-revisions")
            with gr.Accordion("Sampling", open=False):
                with gr.Row():
                    mode = gr.Radio(["greedy", "sample"], value="greedy", label="decoding")
                    temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="temperature")
                    top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.05, label="top-p")
                    max_new_tokens = gr.Slider(1, 128, value=32, step=1, label="max new tokens")
                    seed = gr.Number(value=0, precision=0, label="seed (same seed, same answers)")
            if examples:
                gr.Examples([[m] for m, _, _ in examples], inputs=[mother], label="Mother lines from the eval split")

        with gr.Tab("Score"):
            gr.Markdown(
                "log p(answer | mother) under each model, summed over the answer's tokens and per token; the "
                "model prefers the answer it finds more likely. For the DPO models, the implicit reward "
                "β × (log π(y|x) − log π_ref(y|x)) against the baseline. Each model is scored at the revision "
                "chosen in its column of the Chat tab."
            )
            s_mother = gr.Textbox(label="*MOT: mother line", elem_id="score-mother")
            with gr.Row():
                s_a = gr.Textbox(label="*CHI: answer A", elem_id="score-a")
                s_b = gr.Textbox(label="*CHI: answer B", elem_id="score-b")
            score_btn = gr.Button("Score", variant="primary", elem_id="score")
            table = gr.Dataframe(
                headers=[
                    "model",
                    "revision",
                    "log p(A)",
                    "log p(B)",
                    "per token A",
                    "per token B",
                    "prefers",
                    "DPO reward A",
                    "DPO reward B",
                ],
                interactive=False,
                elem_id="score-table",
            )
            result = gr.JSON(label="result (the /score API returns this)", elem_id="score-json")
            if examples:
                gr.Examples(
                    [list(e) for e in examples],
                    inputs=[s_mother, s_a, s_b],
                    label="Pairs from the eval split (A = the child's real answer)",
                )

        sampling_inputs = [mode, temperature, top_p, max_new_tokens, seed]
        answer_fns = [make_answer(i) for i in range(len(specs))]

        def chain_answers(event, public: bool) -> list:
            return [
                event.then(
                    answer_fns[i],
                    [chatbots[i], dropdowns[i], *sampling_inputs],
                    [chatbots[i], statuses[i]],
                    api_name=f"answer_{i}" if public else None,
                    api_visibility="public" if public else "private",
                    **cpu,
                )
                for i in range(len(specs))
            ]

        said = mother.submit(
            add_turn,
            [mother, *chatbots],
            [mother, notice, *chatbots],
            api_name="add_turn",
            trigger_mode="always_last",  # a line typed while the babies answer is said next, not dropped
            **light,
        )
        regenerated = regen_btn.click(
            drop_last_answers, chatbots, chatbots, api_name="regenerate", api_visibility="undocumented", **light
        )
        answers = chain_answers(said, public=True) + chain_answers(regenerated, public=False)
        stop_btn.click(None, None, None, cancels=answers)
        clear_btn.click(
            lambda: (*[[]] * len(specs), *[""] * (len(specs) + 1)),
            None,
            [*chatbots, *statuses, notice],
            cancels=answers,
            api_name="clear",
            api_visibility="undocumented",
            **light,
        )
        refresh_btn.click(
            refresh_revisions, dropdowns, [*dropdowns, *rev_boxes], api_name="refresh_revisions", **light
        )
        for i, dropdown in enumerate(dropdowns):
            dropdown.change(make_select_revision(i), dropdown, rev_boxes[i], api_name=f"revision_{i}", **cpu)

        scored = score_btn.click(score, [s_mother, s_a, s_b, *dropdowns], result, api_name="score", **cpu)
        scored.then(score_table, result, table, api_visibility="private", **light)

    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=concurrency)
    return demo


demo = build_demo(bc.read_space_config())

if __name__ == "__main__":
    demo.launch()  # honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
