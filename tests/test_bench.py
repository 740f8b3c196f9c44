"""``bench`` over suites of your own: a JSONL suite of clips in three containers with a bad line, scoring
without known facts (chosen options, word overlap, references), run files that keep every trace and resume,
the error list of a lossy run, and the same bench shared over two processes (slow).

Model work stays small: the embedded pair, 4 frames, K = 4, 16 new tokens."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import av
import media
import numpy as np
import pytest

from conftest import free_port
from lvspec import bench, cli, runfile
from lvspec.decode import Settings
from lvspec.errors import UserError
from lvspec.error_list import error_list
from lvspec.models import load_pair
from lvspec.suites import AnswerScorer, Item, ToyScorer, chosen, file_suite, toy_suite
from lvspec.toyworld import DRAFT, TARGET, VIDEOS
from lvspec.trace import RunTrace, VideoInfo

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--max-new-tokens", "16", "--frames", "4", "--k", "4"]
CLIPS = ("red-circle-right", "three-shapes", "blue-square-yellow-star", "green-triangle-growing")
# Figures that depend on the answers only: a resumed run must reproduce them exactly (times may differ).
NOT_TIMES = ("mean_accepted_length", "accepted_ceiling", "retention", "token_f1", "rouge_l", "facts_kept", "accuracy",
             "mismatches", "salvaged", "reference_score", "reference_rouge_l")


@pytest.fixture(scope="module")
def pair():
    return load_pair(str(TARGET), str(DRAFT), device="cpu")


def frames_of(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> Path:
    """12 items (4 shipped clips, each as .mp4, .mkv and .webm, under clips/) and one line of broken JSON
    (line 7); paths relative to the file. Some items are multiple-choice, two have a reference answer."""
    root = tmp_path_factory.mktemp("suite")
    (root / "clips").mkdir()
    examples = {e["video"]: e["prompts"] for e in json.loads((VIDEOS / "examples.json").read_text())}
    rows = []
    for c, name in enumerate(CLIPS):
        source = VIDEOS / f"{name}.mp4"
        shutil.copy(source, root / "clips" / f"{name}.mp4")
        frames = frames_of(source)
        media.encode(root / "clips" / f"{name}.mkv", frames)
        media.encode(root / "clips" / f"{name}.webm", frames, codec="libvpx", options=media.VP8)
        prompts = examples[f"{name}.mp4"]
        for k, suffix in enumerate((".mp4", ".mkv", ".webm")):
            rows.append({"video": f"clips/{name}{suffix}", "prompt": prompts[(3 * c + 2 * k + 1) % len(prompts)]})
    rows[0]["reference"] = "The video shows a red circle moving right."
    rows[2]["reference"] = "It is a circle."
    rows[4] = {"video": rows[4]["video"], "prompt": "What colour is the circle?", "choices": ["blue", "red", "green"]}
    lines = [json.dumps(r) for r in rows]
    lines.insert(6, '{"video": "clips/three-shapes.mp4", "prompt": ')  # line 7: cut off
    (root / "suite.jsonl").write_text("\n".join(lines) + "\n")
    (root / "first5.jsonl").write_text("\n".join(lines[:5]) + "\n")  # as if interrupted after five items
    return root / "suite.jsonl"


def bench_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = cli.main(["bench", "--methods", "vanilla,exact,lvspec", "--min-ratio", "0", "--no-commit-guard", *QUICK, *args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_suite_file_reports_each_bad_line_by_number_and_keeps_the_rest(tmp_path):
    (tmp_path / "a.mp4").write_bytes((VIDEOS / "three-shapes.mp4").read_bytes())
    lines = ['{"video": "a.mp4", "prompt": "Describe the video."}', "not json", '["a.mp4", "hi"]',
             '{"video": "gone.mp4", "prompt": "hi"}', '{"video": "a.mp4", "prompt": "   "}', '{"video": "a.mp4"}',
             '{"video": "a.mp4", "prompt": "hi", "choices": "A or B"}', '{"video": "a.mp4", "prompt": "hi", "clip": 1}',
             "", '{"video": "a.mp4", "prompt": "Which?", "choices": ["red", "blue"], "reference": "blue"}']
    (tmp_path / "s.jsonl").write_text("\n".join(lines) + "\n")
    reported = []
    suite = file_suite(tmp_path / "s.jsonl", reported.append)
    assert [i.key for i in suite] == ["line 1", "line 10"] and suite[0].video == str(tmp_path / "a.mp4")
    assert [m.split(":")[0] for m in reported] == [f"s.jsonl line {n}" for n in range(2, 9)]
    assert "not JSON" in reported[0] and "gone.mp4 not found" in reported[2] and "prompt is empty" in reported[3]
    assert "unknown field(s) clip" in reported[6] and all(m.endswith("; skipped") for m in reported)
    assert suite[1].is_choice and suite[1].reference == "blue" and suite.scorer.name == "answers"


def test_chosen_option_of_an_answer():
    lettered = Item("v", "How many shapes?\nA. two\nB. three\nC. four\nD. one\nAnswer with the option's letter.")
    listed = Item("v", "What colour is the star?", choices=["blue", "yellow", "light blue"])
    assert [chosen(lettered, t) for t in ("B", "B.", "(B) three", "three (B).", "The answer is B", "three.")] == ["B"] * 6
    assert chosen(lettered, "A video of three shapes.") == "B"  # a leading "A" word is no letter
    assert chosen(listed, "It is yellow.") == "B" and chosen(listed, "C") == "C"
    assert chosen(listed, "It is light blue.") == "C"  # the option that holds the other
    assert chosen(listed, "Blue and yellow.") == "blue and yellow"  # no single option: the words themselves


def trace(text: str, prompt: str = "p", method: str = "vanilla") -> RunTrace:
    return RunTrace(method, Settings(), "t", None, prompt, VideoInfo(), text=text)


def test_without_known_facts_retention_is_agreement_with_vanilla_and_references_get_columns():
    items = [Item("v", "Pick.\nA. red\nB. blue", kind="choice", reference="B", key="0"),
             Item("v", "Describe the video.", reference="a red circle moves right", key="1"),
             Item("v", "What colour is the circle?", choices=["red", "blue"], key="2")]
    runs = {"vanilla": [[trace("B")], [trace("a red circle moves left")], [trace("It is red.")]],
            "lvspec": [[trace("(B) blue")], [trace("a red circle slides left")], [trace("It is blue.")]]}
    figures = bench.figures(runs, items, AnswerScorer())
    lossy, vanilla = figures["lvspec"], figures["vanilla"]
    assert vanilla.retention == 1.0 and vanilla.accuracy is None
    assert lossy.retention == pytest.approx((1 + 0.8 + 0) / 3)  # same option; F1 of 4 shared words of 5; other option
    assert lossy.facts_kept == pytest.approx(1 / 2) and lossy.facts_kept_of == (1, 2)  # the choice items: one kept
    assert vanilla.reference_score == pytest.approx((1 + 0.8) / 2) and vanilla.reference_rouge_l == pytest.approx(0.8)
    assert bench.by_task(runs, items, AnswerScorer()) == {}  # the free-text item has no kind
    result = {"methods": {m: asdict(f) for m, f in figures.items()}}
    assert "50.0% (1/2)" in _printed(result)  # a share is printed with the count it is of
    assert "vs reference" in _printed(result) and "vs reference" not in _printed(
        {"methods": {m: {**asdict(f), "reference_score": None} for m, f in figures.items()}})


def test_facts_lost_and_facts_gained_are_counted_apart():
    """A rule that loses one fact and gains another keeps retention at 100% and right kept below it: the
    bench says both, so a reader can tell answers that change from answers that get worse."""
    from lvspec.toyworld.world import Scene, ShapeSpec

    scene = Scene((ShapeSpec("circle", "red", "right"),), "plain")
    items = [Item("v", "Describe the video.", scene, key=str(i)) for i in range(2)]
    right, wrong = "A red circle moves right.", "A red circle moves left."
    runs = {"vanilla": [[trace(right)], [trace(wrong)]], "lvspec": [[trace(wrong)], [trace(right)]]}
    figures = bench.figures(runs, items, ToyScorer())
    assert figures["lvspec"].retention == 1.0 and figures["lvspec"].right_kept_of == (6, 7)
    assert figures["lvspec"].gained_of == (1, 1) and figures["vanilla"].gained_of == (0, 1)
    printed = _printed({"methods": {m: asdict(f) for m, f in figures.items()}})
    row = next(line.split() for line in printed.splitlines() if line.startswith("lvspec"))
    assert row[row.index("(6/7)") + 1] == "1/1"  # gained, printed right after right kept


def test_the_table_prints_e_t_as_a_share_of_what_a_pass_could_commit():
    """'of max' is what compares pairs whose drafts part from their targets more or less often."""
    items = [Item("v", "Describe the video.", key="0")]
    runs = {"vanilla": [[trace("a red circle")]], "lvspec": [[trace("a red circle")]]}
    methods = {m: asdict(f) for m, f in bench.figures(runs, items, AnswerScorer()).items()}
    methods["lvspec"].update(mean_accepted_length=7.29, accepted_ceiling=10.44)
    rows = {line.split()[0]: line.split() for line in _printed({"methods": methods}).splitlines()}
    column = rows["method"].index("of") - 1  # "E[T] max" is two words in the head, one cell in a row
    assert rows["lvspec"][column] == "69.8%" and rows["vanilla"][column] == "—"


def _printed(result: dict) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bench.print_table(result)
    return out.getvalue()


def test_a_jsonl_suite_runs_keeps_every_trace_and_resumes_to_the_same_table(capsys, suite_file, tmp_path):
    whole, resumed = tmp_path / "whole.jsonl", tmp_path / "resumed.jsonl"
    code, out, err = bench_cli(capsys, "--suite", str(suite_file), "--run", str(whole), "--json", str(tmp_path / "a.json"))
    assert code == 0, err
    assert "suite.jsonl line 7: not JSON" in err and "12 of 12 items" in out
    assert "vs reference" in out  # two items have a reference answer
    saved = records(whole)
    assert saved[0]["record"] == "settings" and saved[0]["frames"] == 4 and saved[0]["machine"]["torch_threads"] >= 1
    assert set(saved[0]["configs"]) == {"vanilla", "exact", "lvspec"} and len(saved) == 13
    assert {Path(r["video"]).suffix for r in saved[1:]} == {".mp4", ".mkv", ".webm"}
    assert all(len(r["traces"][label]) == 1 for r in saved[1:] for label in saved[0]["configs"])

    code, _, err = bench_cli(capsys, "--suite", str(suite_file.with_name("first5.jsonl")), "--run", str(resumed))
    assert code == 0, err
    first = records(resumed)
    assert [r["key"] for r in first[1:]] == [f"line {n}" for n in range(1, 6)]
    code, out, err = bench_cli(capsys, "--suite", str(suite_file), "--run", str(resumed), "--json", str(tmp_path / "b.json"))
    assert code == 0, err
    after = records(resumed)
    assert len(after) == 13 and after[:6] == first  # the first five were kept as they were, not run again
    assert [r["key"] for r in after[1:]] == [r["key"] for r in saved[1:]]

    a, b = (json.loads((tmp_path / f"{x}.json").read_text()) for x in "ab")
    assert a["items"] == b["items"] and a["counts"] == b["counts"] == {"items": 12, "run": 12, "skipped": 0}
    for label in a["methods"]:
        assert {f: a["methods"][label][f] for f in NOT_TIMES} == {f: b["methods"][label][f] for f in NOT_TIMES}
    assert a["methods"]["exact"]["retention"] == 1.0 and a["methods"]["exact"]["facts_kept"] == 1.0


def test_an_unreadable_video_is_reported_with_its_line_and_skipped(pair, tmp_path):
    shutil.copy(VIDEOS / "three-shapes.mp4", tmp_path / "good.mp4")
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 40)
    (tmp_path / "s.jsonl").write_text('{"video": "notes.mp4", "prompt": "Describe the video."}\n'
                                      '{"video": "good.mp4", "prompt": "How many shapes are there?"}\n')
    reported = []
    configs = {"vanilla": ("vanilla", Settings(k=4, max_new_tokens=8))}
    result = bench.run(pair, file_suite(tmp_path / "s.jsonl"), configs, frames=4, report=reported.append,
                       run_file=tmp_path / "run.jsonl")
    assert len(reported) == 1 and reported[0].startswith("s.jsonl line 1: ") and "cannot read" in reported[0]
    assert result["counts"] == {"items": 2, "run": 1, "skipped": 1}
    assert [r["key"] for r in records(tmp_path / "run.jsonl")[1:]] == ["line 2"]


def test_a_run_file_drops_a_torn_record_refuses_other_settings_and_merges_parts(pair, tmp_path):
    items = [Item(str(VIDEOS / "three-shapes.mp4"), p, key=str(i)) for i, p in
             enumerate(["How many shapes are there?", "Describe the video.", "What shape is the purple object?"])]
    configs = {"vanilla": ("vanilla", Settings(k=4, max_new_tokens=6))}
    path = tmp_path / "run.jsonl"
    bench.run(pair, items[:1], configs, frames=4, run_file=path)
    whole = path.read_bytes()
    path.write_bytes(whole + whole.splitlines(keepends=True)[1][:50])  # killed while writing item 1
    # an interrupted two-process run left item 2 in rank 1's part
    one = runfile.item_record(2, items[2], bench.run_item(pair, items[2], configs, frames=4), rank=1)
    runfile.append(runfile.part_path(path, 1), one)
    result = bench.run(pair, items, configs, frames=4, run_file=path)
    assert [r["key"] for r in records(path)[1:]] == ["0", "2", "1"] and not runfile.parts(path)
    assert [row["prompt"] for row in result["items"]] == [i.prompt for i in items]
    with pytest.raises(runfile.UserError, match="other settings \\(configs differ\\)"):
        bench.run(pair, items, {"vanilla": ("vanilla", Settings(k=4, max_new_tokens=7))}, frames=4, run_file=path)
    moved = [Item(i.video, "What colour is the circle?", key=i.key) for i in items]
    with pytest.raises(runfile.UserError, match="another item at 0"):
        bench.run(pair, moved, configs, frames=4, run_file=path)


@pytest.fixture(scope="module")
def lossy_run(pair, tmp_path_factory) -> Path:
    """8 toy items, vanilla, exact and LVSpec at λ = 0.95 without the guards (ε = 0, no commit guard): answers
    change."""
    folder = tmp_path_factory.mktemp("toy")
    settings = Settings(k=4, max_new_tokens=32, lam=0.95, min_ratio=0.0, commit_guard=False)
    configs = {m: (m, settings) for m in ("vanilla", "exact", "lvspec")}
    bench.run(pair, toy_suite(8, folder), configs, frames=4, run_file=folder / "run.jsonl")
    return folder / "run.jsonl"


def test_the_error_list_puts_changed_facts_first_with_where_the_answers_parted(lossy_run, capsys):
    run = runfile.load(lossy_run)
    found = error_list(run)
    changed = [d for d in found if d.facts_changed]
    assert changed and found[: len(changed)] == changed and {d.config for d in found} == {"lvspec"}
    assert [d.parting.token for d in changed] == sorted(d.parting.token for d in changed)
    by_key = {s.item.key: s for s in run.items}
    for d in found:
        p, saved = d.parting, by_key[d.key]
        lossy, vanilla = saved.traces["lvspec"][0], saved.traces["vanilla"][0]
        assert lossy.token_ids[: p.token] == vanilla.token_ids[: p.token] != lossy.token_ids[: p.token + 1]
        assert p.round >= 1 and p.verdict in ("loose", "shift") and p.position is not None
        rnd = lossy.rounds[p.round - 1]
        assert rnd.draft_ids[p.position] == lossy.token_ids[p.token] != rnd.target_ids[p.position]
        assert rnd.verdicts[p.position] == p.verdict and p.target == vanilla.token_text(vanilla.token_ids[p.token])
        assert 1 <= p.rank <= p.positions and p.run_epsilon == 0.0
        assert p.run_commit_guard is False
        if p.verdict == "loose":
            assert p.guard_stops == (p.p_draft < 0.2 * p.p_target)
            assert p.commit_stops == (p.position + 1 < p.positions and rnd.anchor[p.position + 1])
        assert any(w.op != "=" for w in d.diff) and d.marked.count("[-") + d.marked.count("{+") >= 1
    for d in changed:
        assert d.lost or d.gained
    assert cli.main(["errors", str(lossy_run), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(x["key"], x["config"]) for x in listed] == [(d.key, d.config) for d in found]
    assert listed[0]["parting"]["round"] == found[0].parting.round
    assert cli.main(["errors", str(lossy_run), "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n#") == 1 and "parted at token" in out and "the first 1 shown" in out


def test_an_exact_run_lists_no_error(lossy_run, tmp_path, capsys):
    data = records(lossy_run)  # the same run as if it had asked for vanilla and exact only
    data[0]["configs"] = {k: v for k, v in data[0]["configs"].items() if k != "lvspec"}
    for r in data[1:]:
        del r["traces"]["lvspec"]
    exact = tmp_path / "exact.jsonl"
    exact.write_text("".join(json.dumps(r) + "\n" for r in data))
    run = runfile.load(exact)
    assert error_list(run) == [] and error_list(run, ["exact"]) == []  # exact is vanilla, token for token
    assert cli.main(["errors", str(exact)]) == 0
    assert capsys.readouterr().out.startswith("0 changed answer(s) over 8 items")
    assert cli.main(["errors", str(exact), "--config", "lvspec"]) == 2
    assert "no config 'lvspec'" in capsys.readouterr().err


def test_toy_suites_bring_the_toy_scorer_and_file_suites_do_not():
    import lvspec.bench as b

    assert "toyworld" not in Path(b.__file__).read_text()
    scorer = ToyScorer()
    item = Item("v", "What colour is the circle?")
    assert scorer.facts(item, "It is red.") == scorer.facts(item, "Red, it is!") != scorer.facts(item, "It is blue.")
    assert scorer.task(item) == "short QA" and AnswerScorer().facts(item, "It is red.") is None


def test_a_toy_suite_of_chosen_tasks_asks_only_them(tmp_path, capsys):
    """``bench --tasks detailed --n 6``: six descriptions, so one task can be measured over many answers."""
    scorer = ToyScorer()
    for name in ("d", "s", "all", "x"):
        (tmp_path / name).mkdir()
    detailed = toy_suite(6, tmp_path / "d", tasks=["detailed"])
    assert len(detailed) == 6 and {scorer.task(item) for item in detailed} == {"detailed"}
    short = toy_suite(8, tmp_path / "s", tasks=["short-QA", "Choice"])
    assert {scorer.task(item) for item in short} == {"short QA", "choice"}
    assert {scorer.task(item) for item in toy_suite(8, tmp_path / "all")} == set(scorer.task_order)
    with pytest.raises(UserError, match="unknown task.*'captions'.*detailed, describe, medium, choice, short QA"):
        toy_suite(4, tmp_path / "x", tasks=["captions"])
    assert not any((tmp_path / "x").iterdir())  # refused before a clip is rendered
    assert cli.main(["bench", "--suite", "samples", "--tasks", "detailed", *QUICK]) == 2
    assert "--tasks chooses among the toy suite's tasks" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_share_the_items_and_answer_as_one(tmp_path):
    """``accelerate launch --multi_gpu --num_processes 2`` on this CPU (two gloo processes) against one process:
    the same answers item by item, one merged run file, no part left."""
    launcher = Path(sys.executable).with_name("accelerate")
    if not launcher.exists():
        pytest.skip("accelerate's launcher is not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    args = ["bench", "--suite", "toy", "--n", "4", "--methods", "vanilla,exact,lvspec", "--device", "cpu", *QUICK]
    one = subprocess.run([sys.executable, "-m", "lvspec", *args, "--run", str(tmp_path / "one.jsonl"),
                          "--json", str(tmp_path / "one.json")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
                          "-m", "lvspec",
                          *args, "--run", str(tmp_path / "two.jsonl"), "--json", str(tmp_path / "two.json")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr
    a, b = (json.loads((tmp_path / f"{x}.json").read_text()) for x in ("one", "two"))

    def answers(result):  # the clips were rendered into each process's own folder: compare all but the path
        return [{k: v for k, v in row.items() if k != "video"} for row in result["items"]]

    assert answers(a) == answers(b) and len(b["items"]) == 4
    saved = records(tmp_path / "two.jsonl")
    assert saved[0]["processes"] == 2 and sorted({r["rank"] for r in saved[1:]}) == [0, 1]
    assert [r["key"] for r in saved[1:]] == ["0", "1", "2", "3"] and not runfile.parts(tmp_path / "two.jsonl")
    assert two.stdout.count("4 of 4 items") == 1  # one table, from the main process


def test_the_app_errors_tab_lists_a_run_and_opens_a_row_in_every_view(lossy_run):
    import gradio as gr

    import app

    rows, found, note = app.open_errors(str(lossy_run))
    assert rows and len(rows) == len(found) and "with changed facts" in note and rows[0][2] == "changed"
    first = error_list(runfile.load(lossy_run))[0]
    shown = app.open_error(found, "default", gr.SelectData(None, {"index": [0, 0], "value": rows[0][0]}))
    assert [t.method for t in shown[app.state]] == ["lvspec", "exact", "vanilla"]
    assert shown[app.state][0].text == first.text and shown[app.round_index] == first.parting.round
    assert f"item {first.index} of run.jsonl" in shown[app.stage]
