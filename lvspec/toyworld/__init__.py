"""The embedded world: synthetic clips with known facts, their answers, tokenizer and tiny models."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets"
TARGET = ASSETS / "models" / "toy-target"
DRAFT = ASSETS / "models" / "toy-draft"
VIDEOS = ASSETS / "videos"
