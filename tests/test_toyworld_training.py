"""Training data: the per-pixel shape labels match the frames, and every video token gets the right region."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from lvspec.toyworld import TARGET
from lvspec.toyworld import answers as A
from lvspec.toyworld.data import OBJECT_HEADS, TRAIN, collate, make_sample
from lvspec.toyworld.world import COLOURS, STYLES, render, render_labelled, sample_scene


@pytest.mark.parametrize("style", STYLES)
def test_labels_mark_each_shapes_pixels_and_frames_equal_render(style):
    for seed in range(4):
        scene = sample_scene(np.random.default_rng(seed))
        frames, masks = render_labelled(scene, np.random.default_rng(seed), 120, 90, 6, style)
        assert np.array_equal(frames, render(scene, np.random.default_rng(seed), 120, 90, 6, style))
        assert masks.shape == frames.shape[:3] and set(np.unique(masks)) == set(range(len(scene.shapes) + 1))
        for label, spec in enumerate(scene.shapes, start=1):
            inside = frames[masks == label].astype(np.float32).mean(0)
            nearest = min(COLOURS, key=lambda c: np.square(inside - COLOURS[c]).sum())
            assert nearest == spec.colour, (scene, label, inside)


def test_object_targets_follow_the_models_token_order():
    processor = AutoProcessor.from_pretrained(TARGET)
    samples = [make_sample((TRAIN, 9, 0, i), "target", 1) for i in range(3)]
    batch = collate(processor, samples)
    n_video = int((batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum())
    weights = batch["object_weights"]
    assert weights.shape == (sum(len(s.scene.shapes) for s in samples), n_video)
    assert torch.allclose(weights.sum(1), torch.ones(len(weights)))
    row, start = 0, 0
    for sample, (t, h, w) in zip(samples, batch["video_grid_thw"].tolist()):
        gh, gw = h // 2, w // 2
        for label, spec in enumerate(sample.scene.shapes, start=1):
            for head, names in OBJECT_HEADS.items():
                assert names[batch[f"object_{head}"][row]] == getattr(spec, head)
            # only this sample's tokens; in its first time slice, token (row, column) weighs as much as the
            # object's share of that cell's pixels in the first two frames
            assert weights[row, :start].sum() == 0 and weights[row, start + t * gh * gw :].sum() == 0
            mask = torch.from_numpy((sample.masks[:2] == label).astype(np.float32)).mean(0)
            pooled = torch.nn.functional.adaptive_avg_pool2d(mask[None], (gh, gw))[0]
            first = weights[row, start : start + gh * gw].view(gh, gw)
            assert torch.allclose(first / first.sum(), pooled / pooled.sum(), atol=1e-5)
            row += 1
        start += t * gh * gw
    assert start == n_video


def test_every_opening_of_a_motion_phrase_carries_the_fact_weight():
    """A weighted loss scales each candidate's learnt probability by its weight: if "grows" weighed more than
    "moves" or "stays", an unsure model would say every shape grows."""
    from lvspec.toyworld.wording import _DIRECTIONS, _IN_PLACE, _MOVERS
    from lvspec.toyworld.data import fact_ids

    tokenizer = AutoProcessor.from_pretrained(TARGET).tokenizer
    weighted = set(fact_ids(tokenizer).tolist())
    phrases = [form for pair in [*_MOVERS, *(p for pairs in _IN_PLACE.values() for p in pairs)] for form in pair]
    phrases += [d for forms in _DIRECTIONS.values() for d in forms if " " not in d]
    for phrase in phrases:
        opening = tokenizer(" " + phrase, add_special_tokens=False)["input_ids"][0]
        assert opening in weighted, phrase
    filler = {tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in ("the", "is", "video", "and")}
    assert not filler & weighted


@pytest.mark.parametrize("kind", ["describe", "detailed", "medium"])
def test_a_training_mix_leans_on_crowded_clips_and_a_kind_of_question(kind):
    from lvspec.toyworld.data import Mix

    lean = [make_sample((TRAIN, 3, 0, i), "target", 4, mix=Mix(multi_shape=0.9, **{kind: 0.8})) for i in range(60)]
    plain = [make_sample((TRAIN, 3, 0, i), "target", 4) for i in range(60)]

    def shares(samples):
        crowded = sum(len(s.scene.shapes) > 1 for s in samples) / len(samples)
        first = [s.turns[0].prompt for s in samples]
        return crowded, sum(A.parse_prompt(s.scene, p).kind == kind for s, p in zip(samples, first)) / len(samples)

    (crowded, asked), (crowded0, asked0) = shares(lean), shares(plain)
    assert crowded > 0.8 and asked > 0.6 and asked0 < 0.6 and crowded > crowded0


def test_multiple_choice_repeats_within_a_clip_only_where_asked():
    """Other kinds stay once per conversation (a repeat would be answered from the earlier reply)."""
    from lvspec.toyworld.data import Mix

    def kinds(repeat):
        mix = Mix(choice=0.6, repeat_choice=repeat)
        return [[t.kind for t in make_sample((TRAIN, 5, 0, i), "target", 4, mix=mix).turns] for i in range(60)]

    repeated, once = kinds(True), kinds(False)
    assert any(k.count("choice") > 1 for k in repeated)
    assert all(k.count(kind) <= 1 for k in once for kind in k)
    assert all(k.count(kind) <= 1 for k in repeated for kind in k if kind != "choice")


def test_a_letter_drill_trains_the_letter_of_the_option_its_reply_begins_with_and_nothing_else():
    """The drills teach the look-up from the option just written to its letter: the letter is that option's
    in the prompt, the given option is never trained or aligned, and the clip's real questions come first."""
    from lvspec.toyworld.data import Mix
    from lvspec.toyworld.longform import chosen_letter, parse_choice

    processor = AutoProcessor.from_pretrained(TARGET)
    tokenizer = processor.tokenizer
    samples = [make_sample((TRAIN, 6, 0, i), "target", 3, mix=Mix(letter_drills=3)) for i in range(12)]
    batch = collate(processor, samples)
    letters = set()
    for row, sample in enumerate(samples):
        kinds = [t.kind for t in sample.turns]
        assert kinds[-3:] == ["letter"] * 3 and "letter" not in kinds[:-3]
        for turn in sample.turns[-3:]:
            options = parse_choice(turn.prompt)[1]
            letter = chosen_letter(turn.reply)
            assert turn.given == f"{options[letter]} (" and turn.reply == f"{turn.given}{letter})."
            letters.add(letter)
        letters_of = [f"{chosen_letter(t.reply)})." for t in sample.turns[-3:]]
        for mask in (batch["labels"][row] != -100, batch["answer_mask"][row]):  # trained, and aligned
            replies = tokenizer.decode(batch["input_ids"][row][mask]).split(tokenizer.eos_token)
            assert replies[-4:-1] == letters_of
    assert letters == set("ABCD")  # the right letter is not always one


def test_a_batch_trains_on_replies_less_their_given_prefix_and_marks_what_each_word_names():
    """A reply begun in the other style's words is context, not a target; a choice's letter carries the
    answer's weight; a colour or shape word points at the object-weight row of the object it names."""
    from lvspec.toyworld.data import Mix, fact_ids

    processor = AutoProcessor.from_pretrained(TARGET)
    tokenizer = processor.tokenizer
    mix = Mix(describe=0.0, mixed=1.0, mixed_medium=1.0)
    samples = [make_sample((TRAIN, 4, 0, i), "target", 4, mix=mix) for i in range(24)]
    batch = collate(processor, samples)
    given = [t for s in samples for t in s.turns if t.given]
    choices = [t for s in samples for t in s.turns if t.kind == "choice"]
    assert given and choices
    labels, answer = batch["labels"], batch["answer_mask"]
    assert (labels != -100).sum() < answer.sum()  # the given prefixes are left out
    # every reply's first token weighs like a fact (it picks the task's form), but not that of a given prefix
    assert int(batch["opening_mask"].sum()) == sum(not t.given for s in samples for t in s.turns)
    assert not (batch["opening_mask"] & (labels == -100)).any()
    facts = set(fact_ids(tokenizer).tolist())
    first_object = 0
    for row, sample in enumerate(samples):
        text = tokenizer.decode(labels[row][labels[row] != -100])
        for turn in sample.turns:
            assert turn.reply[len(turn.given):].strip() in text  # the rest of every reply is trained
            if turn.given:
                assert turn.reply not in text
        marked = batch["fact_mask"][row] & ~torch.isin(batch["input_ids"][row], torch.tensor(sorted(facts)))
        pieces = {tokenizer.decode([i]) for i in batch["input_ids"][row][marked].tolist()}
        choices = [t.reply for t in sample.turns if t.kind == "choice"]  # a choice reply is all answer: weighted
        assert bool(pieces) == bool(choices)
        assert all(p == tokenizer.eos_token or any(p in reply for reply in choices) for p in pieces), pieces
        named = batch["token_objects"][row]
        for position in torch.nonzero(named >= 0).flatten().tolist():
            word = tokenizer.decode([int(batch["input_ids"][row, position])]).strip().lower()
            spec = sample.scene.shapes[int(named[position]) - first_object]
            assert answer[row, position] and word in (spec.colour, spec.shape)
        first_object += len(sample.scene.shapes)


def test_given_facts_trains_the_fact_words_of_a_given_prefix_and_nothing_else_of_it():
    from dataclasses import replace

    from lvspec.toyworld.data import Mix, fact_ids

    processor = AutoProcessor.from_pretrained(TARGET)
    mix = Mix(describe=0.0, detailed=0.6, mixed=1.0, given_facts=True)
    samples = [make_sample((TRAIN, 5, 0, i), "target", 2, mix=mix) for i in range(12)]
    assert any(t.given_facts for s in samples for t in s.turns)
    plain = [replace(s, turns=[replace(t, given_facts=False) for t in s.turns]) for s in samples]
    batch = collate(processor, samples)
    with_facts, without = batch["labels"] != -100, collate(processor, plain)["labels"] != -100
    added = with_facts & ~without
    assert added.any() and not (without & ~with_facts).any()
    assert torch.isin(batch["input_ids"][added], fact_ids(processor.tokenizer)).all()


def test_the_tokenizer_grows_for_the_long_form_words_and_keeps_every_old_id():
    from lvspec.toyworld.train import longform_texts
    from lvspec.toyworld.vocab import build_tokenizer, extend_tokenizer

    new_texts, old_texts = longform_texts(400, seed=1)
    old = build_tokenizer(old_texts, vocab_size=400)  # a tokenizer of the short tasks alone
    grown = extend_tokenizer(old, new_texts[:400], old_texts)
    assert len(grown) > len(old)
    assert all(grown(t)["input_ids"] == old(t)["input_ids"] for t in old_texts)
    assert grown.convert_tokens_to_ids(["<|video_pad|>", "<|im_end|>"]) == old.convert_tokens_to_ids(["<|video_pad|>", "<|im_end|>"])
    word = " background"
    assert len(grown(word)["input_ids"]) == 1 < len(old(word)["input_ids"])
    assert grown.decode(grown(new_texts[0])["input_ids"]) == new_texts[0]


def test_recipe_rebuilds_the_shipped_pair_from_nothing_stage_after_stage():
    from lvspec.toyworld import DRAFT, TARGET
    from lvspec.toyworld.recipe import commands

    lines = [line.split() for line in commands({"target": TARGET, "draft": DRAFT})]
    runs = [dict(zip(words[4::2], words[5::2])) for words in lines if words[3] == "train"]
    # a frame budget set between stages rewrites the model the stage before it wrote
    for before, words in zip(lines, lines[1:]):
        assert words[3] != "frames" or words[4] == before[before.index("--out") + 1]
    # a stage whose settings changed on resume is two commands on one work folder, the first stopped early
    stages = [run for run, after in zip(runs, [*runs[1:], {}]) if run["--work"] != after.get("--work")]
    assert all("--stop-at" in run for run in runs if run not in stages)
    written: list[str] = []
    for role in ("target", "draft"):
        chain = [flags for flags in stages if flags.get("--role", "target") == role]
        assert "--init" not in chain[0] and chain[-1]["--out"] == f"assets/models/toy-{role}"
        for before, stage in zip(chain, chain[1:]):
            assert stage["--init"] == before["--out"]
        for stage in chain:
            source = stage.get("--tokenizer-from")  # an earlier stage's model or its work folder's processor
            assert source is None or source in written or source.removesuffix("/processor") in written
            written += [stage["--out"], stage["--work"]]


def test_a_frame_budget_set_after_training_is_read_and_repeated_by_the_recipe(tmp_path):
    """``toyworld frames`` rewrites a trained model's processor, and the recipe repeats it after the stage."""
    import shutil

    from lvspec.toyworld import DRAFT
    from lvspec.toyworld.recipe import commands
    from lvspec.toyworld.vocab import reframe

    model = tmp_path / "draft"
    shutil.copytree(DRAFT, model)
    before = commands({"draft": model})
    reframe(model, 168)
    assert AutoProcessor.from_pretrained(model).video_processor.size["longest_edge"] == 168 * 168
    assert commands({"draft": model}) == [*before, f"python -m lvspec.toyworld frames {os.path.relpath(model)} --max-side 168"]


def test_the_recipe_in_the_docs_is_the_one_the_shipped_records_give():
    import re
    from pathlib import Path

    from lvspec.toyworld import DRAFT, TARGET
    from lvspec.toyworld.recipe import commands

    text = (Path(__file__).parents[1] / "docs" / "training.md").read_text()
    block = re.findall(r"```bash\n(.*?)```", text, flags=re.S)[1]
    documented = [" ".join(line.split()) for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    assert documented == commands({"target": TARGET, "draft": DRAFT})


def test_a_stage_stopped_early_and_resumed_ends_bit_for_bit_where_an_unbroken_run_does(tmp_path):
    """``--stop-at`` keeps the schedule of ``--steps``, and a checkpoint resumes exactly: the recipe's re-saved
    and resumed stages are the runs they record (on one machine and thread count: bf16 rounds per CPU)."""
    from safetensors.torch import load_file

    from lvspec.toyworld import DRAFT
    from lvspec.toyworld.train import TrainConfig, train

    def run(name, **kw):
        c = TrainConfig(role="draft", init=str(DRAFT), steps=4, batch_size=2, max_turns=1, warmup=1, lr=1e-3,
                        checkpoint_every=1, threads=1, work=str(tmp_path / name), out=str(tmp_path / name / "model"),
                        **kw)
        return train(c)

    stopped = run("broken", stop_at=2)
    record = json.loads((stopped / "training.json").read_text())
    assert record["config"]["stop_at"] == 2 and record["final_loss"] is not None
    resumed, unbroken = run("broken"), run("unbroken")
    a, b = load_file(resumed / "model.safetensors"), load_file(unbroken / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], load_file(DRAFT / "model.safetensors")[k]) for k in a)  # it trained


def test_the_letter_look_up_is_read_at_each_drills_letter():
    """`eval --drills` scores the target's token where each drill's letter stands (the function checks every
    token it reads is a letter A–D), teacher-forced, so its figure is the look-up alone."""
    from lvspec.toyworld.evaluate import letter_lookup

    share = letter_lookup(str(TARGET), 12)
    assert share * 12 == round(share * 12) and 0.0 <= share <= 1.0
