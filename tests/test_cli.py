"""``python -m lvspec generate`` end to end on a real mp4 and local model folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import save_model
from lvspec.toyworld.clipio import write_mp4
from lvspec.toyworld.vocab import build_tokenizer
from lvspec.trace import RunTrace

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.parametrize("folders", [0], indirect=True)  # one pair is enough for the CLI


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


def test_bench_runs_every_method_on_a_file_suite_and_writes_figures(folders, suite, tmp_path):
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    res = run("bench", "--suite", str(suite), "--max-new-tokens", "12", "--target", str(folders / "target"),
              "--draft", str(folders / "near"), "--json", str(out), "--plot", str(plot))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].split()[:5] == ["method", "E[T]", "E[T]", "max", "tok/s"]
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


def test_bench_refuses_unknown_methods_and_bad_suites(folders, tmp_path):
    res = run("bench", "--methods", "vanilla,fastest", "--target", str(folders / "target"))
    assert res.returncode == 2 and res.stderr.startswith("error: unknown method(s) fastest")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "no video"}\n')
    res = run("bench", "--suite", str(bad), "--methods", "vanilla", "--target", str(folders / "target"))
    assert res.returncode == 2 and "line 1" in res.stderr and "Traceback" not in res.stderr
