"""``python -m lvspec generate`` on every bad input: a user error exits 2 with one ``error:`` line and no
traceback; every usable video runs through the embedded pair."""

from __future__ import annotations

import json
import re
import shutil

import hardening_media as media
import pytest
import torch
from test_hardening_video import REFUSED

from lvspec import cli
from lvspec.toyworld import TARGET
from lvspec.trace import RunTrace

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


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return media.bad_files(tmp_path_factory.mktemp("bad"))


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

        pair.target.forward = forward
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
