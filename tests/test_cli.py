"""``python -m lvspec``: generate, bench and sweep end to end on a real mp4 and local model folders; and
``generate`` on every bad input: a user error exits 2 with one ``error:`` line and no traceback; every usable
video runs through the embedded pair."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import media
import numpy as np
import pytest
import torch

from conftest import REFUSED, save_model
from lvspec import cli
from lvspec.toyworld import TARGET
from lvspec.toyworld.clipio import write_mp4
from lvspec.toyworld.vocab import build_tokenizer
from lvspec.trace import RunTrace

ROOT = Path(__file__).resolve().parents[1]
ONE_PAIR = pytest.mark.parametrize("folders", [0], indirect=True)  # one pair is enough for the CLI


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lvspec", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "clip.mp4"
    frames = np.random.default_rng(0).integers(0, 256, (20, 64, 64, 3), dtype=np.uint8)
    write_mp4(frames, str(path), fps=10)
    return str(path)


@ONE_PAIR
def test_generate_prints_answer_summary_and_writes_trace(folders, video, tmp_path):
    out = tmp_path / "trace.json"
    target, draft = str(folders / "target"), str(folders / "near")
    res = run("generate", "--video", video, "--prompt", "Describe the video.", "--method", "lvspec",
              "--target", target, "--draft", draft, "--max-new-tokens", "20", "--k", "4", "--frames", "8",
              "--json", str(out))
    assert res.returncode == 0, res.stderr
    summary = res.stdout.strip().splitlines()[-1]
    assert summary.startswith("[lvspec]") and "E[T]" in summary and "tok/s" in summary
    trace = RunTrace.load(out)
    assert trace.method == "lvspec" and trace.video.n_frames == 8 and trace.params.k == 4
    assert trace.target == target and trace.draft == draft


def one_line_error(res) -> str:
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


@ONE_PAIR
def test_user_errors_exit_2_with_one_line(folders, video, tmp_path):
    target, draft = str(folders / "target"), str(folders / "near")
    base = ["generate", "--video", video, "--prompt", "hi", "--target", target]
    assert "not found" in one_line_error(run(*base[:2], str(tmp_path / "missing.mp4"), *base[3:], "--method", "vanilla"))
    assert "empty" in one_line_error(run("generate", "--video", video, "--prompt", "  ", "--target", target, "--method", "vanilla"))
    assert "cannot load the target" in one_line_error(run(*base[:6], str(tmp_path / "nowhere"), "--method", "vanilla"))
    assert "needs --draft" in one_line_error(run(*base, "--method", "exact"))
    assert "--lam" in one_line_error(run(*base, "--draft", draft, "--lam", "1.5"))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert "cannot read" in one_line_error(run("generate", "--video", str(text), "--prompt", "hi", "--target", target, "--method", "vanilla"))


@ONE_PAIR
def test_mismatched_tokenizers_are_refused(folders, video, tmp_path):
    other = build_tokenizer(["completely different words here"] * 20, vocab_size=300)
    save_model(tmp_path / "alien", other, seed=5, layers=1, hidden=32)
    res = run("generate", "--video", video, "--prompt", "hi", "--target", str(folders / "target"),
              "--draft", str(tmp_path / "alien"), "--method", "exact")
    assert "different tokenizers" in one_line_error(res)


@pytest.fixture
def suite(video, tmp_path):
    path = tmp_path / "suite.jsonl"
    path.write_text(json.dumps({"video": video, "prompt": "Describe the video."}) + "\n"
                    + json.dumps({"video": video, "prompt": "How many shapes are there?"}) + "\n")
    return path


@ONE_PAIR
def test_bench_runs_every_method_on_a_file_suite_and_writes_figures(folders, suite, tmp_path):
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    res = run("bench", "--suite", str(suite), "--max-new-tokens", "12", "--target", str(folders / "target"),
              "--draft", str(folders / "near"), "--json", str(out), "--plot", str(plot))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("on ") and "torch threads" in lines[0]  # where the figures were measured
    assert lines[1] == "2 of 2 items"
    assert lines[2].split()[:7] == ["method", "E[T]", "E[T]", "max", "of", "max", "tok/s"]
    result = json.loads(out.read_text())
    assert set(result["methods"]) == {"vanilla", "exact", "lvspec", "lvspec (paper)", "fly", "random", "hf"}
    assert len(result["items"]) == 2
    paper = result["configs"]["lvspec (paper)"]  # the paper's own rule beside the defaults
    assert (paper["lam"], paper["min_ratio"], paper["tau"], paper["window"]) == (0.7, 0.0, None, 3)
    assert result["configs"]["lvspec"]["min_ratio"] != 0.0
    exact, vanilla = result["methods"]["exact"], result["methods"]["vanilla"]
    assert vanilla["mean_accepted_length"] == 1.0 and vanilla["speedup"] == 1.0
    for lossless in ("exact", "hf"):  # the same answers as vanilla
        assert result["methods"][lossless]["token_f1"] == result["methods"][lossless]["rouge_l"] == 1.0
        assert all(item[lossless]["text"] == item["vanilla"]["text"] for item in result["items"])
    assert result["methods"]["hf"]["mean_accepted_length"] > 1.0
    assert vanilla["accepted_ceiling"] == 1.0
    for name, f in result["methods"].items():  # E[T] if every drafted token were accepted: at most K + 1
        assert f["mean_accepted_length"] <= f["accepted_ceiling"] + 1e-9 and f["accepted_ceiling"] <= 11, name
    assert abs(sum(exact["shares"].values()) - 1.0) < 1e-6 and exact["shares"]["identify"] > 0
    assert result["machine"]["device"] == "cpu"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@ONE_PAIR
def test_sweep_covers_lambda_and_window_with_the_peers(folders, suite, tmp_path):
    out, plot = tmp_path / "sweep.json", tmp_path / "frontier.png"
    res = run("sweep", "--suite", str(suite), "--max-new-tokens", "10", "--target", str(folders / "target"),
              "--draft", str(folders / "near"), "--json", str(out), "--plot", str(plot))
    assert res.returncode == 0, res.stderr
    result = json.loads(out.read_text())
    lvspec = {(c["lam"], c["window"]) for c in result["configs"].values() if c["method"] == "lvspec"}
    assert lvspec == {(lam, w) for lam in (0.0, 0.3, 0.5, 0.7, 0.8, 0.9) for w in (0, 3)}
    assert {c["method"] for c in result["configs"].values()} == {"vanilla", "exact", "lvspec", "random", "fly"}
    strict = "lvspec λ=0 w=0"
    assert all(item[strict]["text"] == item["vanilla"]["text"] for item in result["items"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@ONE_PAIR
def test_bench_refuses_unknown_methods_and_bad_suites(folders, tmp_path):
    res = run("bench", "--methods", "vanilla,fastest", "--target", str(folders / "target"))
    assert res.returncode == 2 and res.stderr.startswith("error: unknown method(s) fastest")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "no video"}\n')
    res = run("bench", "--suite", str(bad), "--methods", "vanilla", "--target", str(folders / "target"))
    assert res.returncode == 2 and "line 1" in res.stderr and "Traceback" not in res.stderr


QUICK = ["--max-new-tokens", "3", "--frames", "4", "--k", "2"]


def generate(capsys, video, prompt="Describe the video.", *extra: str) -> tuple[int, str, str]:
    """Exit code, stdout and the one ``error:`` line (or "") of an in-process run."""
    try:
        code = cli.main(["generate", "--video", str(video), "--prompt", prompt, *QUICK, *extra])
    except SystemExit as e:  # argparse and check() exit themselves
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == (code != 0), err
    return code, out, errors[0] if errors else ""


@pytest.mark.parametrize("kind", REFUSED)
def test_refused_videos_exit_2_with_the_reason(capsys, files, kind):
    code, _, error = generate(capsys, files[kind])
    assert code == 2 and files[kind].name in error
    assert re.search(REFUSED[kind], error)


@pytest.mark.parametrize("kind", ["one-frame", "8k", "gif", "vertical", "rotated", "vfr"])  # the app test runs the rest
def test_usable_videos_run_through_the_embedded_pair(capsys, files, kind, tmp_path):
    code, out, error = generate(capsys, files[kind], "Describe the video.", "--json", str(tmp_path / "t.json"))
    assert code == 0, error
    trace = RunTrace.load(tmp_path / "t.json")
    assert trace.text and out.splitlines()[-1].startswith("[lvspec]")
    assert trace.video.n_frames == min(4, {"one-frame": 1, "8k": 2}.get(kind, 24))


def test_hour_long_video_runs(capsys, tmp_path):
    code, _, error = generate(capsys, media.hour_long(tmp_path / "hour.mp4"), "Describe the video.",
                              "--json", str(tmp_path / "t.json"))
    assert code == 0, error
    assert RunTrace.load(tmp_path / "t.json").video.seconds == 3600


@pytest.mark.parametrize(
    ("prompt", "reason"), [("", "the prompt is empty"), (" \t\n ", "the prompt is empty"), ("why " * 600, "characters long")]
)
def test_bad_prompts(capsys, files, prompt, reason):
    code, _, error = generate(capsys, files["mkv"], prompt)
    assert code == 2 and reason in error


def test_any_unicode_prompt_is_kept_exactly(capsys, files, tmp_path):
    prompt = "Décris la vidéo 🎥 — 视频里有什么？ \u202eRTL\u202c e\u0301 \U0001f9d1\u200d\U0001f52c"
    code, _, error = generate(capsys, files["mkv"], prompt, "--json", str(tmp_path / "t.json"))
    assert code == 0, error
    assert RunTrace.load(tmp_path / "t.json").prompt == prompt


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    (root / "bert").mkdir()
    (root / "bert" / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    (root / "garbled").mkdir()
    (root / "garbled" / "config.json").write_text("not json {")
    shutil.copytree(TARGET, root / "no-weights", ignore=shutil.ignore_patterns("*.safetensors"))
    shutil.copytree(TARGET, root / "damaged")
    weights = root / "damaged" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    return root


@pytest.mark.parametrize(
    ("folder", "reason"),
    [
        ("missing", "cannot load the target"),
        ("bert", "model type 'bert' is not supported"),
        ("garbled", "not a valid JSON file"),
        ("no-weights", "no file named model.safetensors"),
        ("damaged", "Error while deserializing header"),
    ],
)
def test_unusable_models_are_refused(capsys, files, broken_models, folder, reason):
    code, _, error = generate(capsys, files["mkv"], "hi", "--target", str(broken_models / folder), "--method", "vanilla")
    assert code == 2 and reason in error


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), MemoryError()])
def test_out_of_memory_is_a_user_error_with_a_suggestion(capsys, files, monkeypatch, error):
    from lvspec import models

    real = models.load_pair

    def load_then_fill_memory(*args, **kwargs):
        pair = real(*args, **kwargs)

        def forward(*a, **k):
            raise error

        pair.target.get_decoder().forward = forward  # every decoding step goes through the language model
        return pair

    monkeypatch.setattr(models, "load_pair", load_then_fill_memory)
    code, _, message = generate(capsys, files["mkv"])
    assert code == 2 and message == f"error: out of memory: {cli.MEMORY_HINT}"


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--dtype", "float8"], "invalid choice: 'float8'"),
        (["--device", "toaster"], "--device toaster is not a device"),
        (["--frames", "1000"], "frames must be between 1 and 256"),
        (["--k", "0"], "must be ≥ 1"),
        (["--json", "/no/such/folder/t.json"], "its folder does not exist"),
    ],
)
def test_bad_options_exit_2_before_any_work(capsys, files, extra, reason):
    code, _, error = generate(capsys, files["mkv"], "hi", *extra)
    assert code == 2 and reason in error


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it(capsys, files):
    code, _, error = generate(capsys, files["mkv"], "hi", "--device", "cuda")
    assert code == 2 and "no CUDA device" in error
