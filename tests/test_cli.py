"""The command line, run in-process: tables and JSON on success, exit code 2 and a clear message on
bad input."""

from __future__ import annotations

import json

import pytest

from ponder.cli import main
from ponder.tasks import BUILTIN


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a command that wrongly writes runs/ writes it here


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())  # unwrap rich's line breaks


def test_eval_prints_a_table_and_writes_json(capsys, model_dir, tmp_path):
    report = tmp_path / "report.json"
    code, out = run(
        capsys, "eval", "--model", str(model_dir), "--per-task", "2", "--tasks", "letters:1",
        "--max-tokens", "16", "--json", str(report),
    )  # fmt: skip
    assert code == 0, out
    assert "letters" in out and "overall" in out
    data = json.loads(report.read_text())
    assert data["problems"] == 2
    assert set(data["by_task"]) == {"letters"}
    assert len(data["samples"]) == 2
    assert 0.0 <= data["overall_accuracy"] <= 1.0


def test_eval_with_thinking_on_makes_every_answer_think(capsys, model_dir, tmp_path):
    report = tmp_path / "report.json"
    code, out = run(
        capsys, "eval", "--model", str(model_dir), "--per-task", "3", "--tasks", "letters:1,arithmetic:1",
        "--max-tokens", "24", "--force-thinking", "--json", str(report),
    )  # fmt: skip
    assert code == 0, out
    assert "thinking on" in out
    data = json.loads(report.read_text())
    assert data["thinking_share"] == 1.0


def test_eval_unknown_task_exits_2_listing_known_tasks(capsys, model_dir):
    code, out = run(capsys, "eval", "--model", str(model_dir), "--tasks", "nosuch")
    assert code == 2
    assert "nosuch" in out
    for name in BUILTIN:
        assert name in out


def test_eval_missing_model_exits_2_naming_the_path(capsys, tmp_path):
    missing = tmp_path / "nonexistent"
    code, out = run(capsys, "eval", "--model", str(missing), "--tasks", "letters:1")
    assert code == 2
    assert "nonexistent" in out and "does not exist" in out


def test_pretrain_config_with_unknown_key_exits_2_naming_it(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 5\nbatch_sise: 8\n")
    code, out = run(capsys, "pretrain", "--config", str(bad))
    assert code == 2
    assert "batch_sise" in out
    assert not (tmp_path / "runs").exists()


def test_pretrain_config_file_missing_exits_2(capsys, tmp_path):
    code, out = run(capsys, "pretrain", "--config", str(tmp_path / "none.yaml"))
    assert code == 2 and "none.yaml" in out


def test_pretrain_bad_preset_exits_2_naming_allowed_values(capsys, tmp_path):
    code, out = run(capsys, "pretrain", "--preset", "7b")
    assert code == 2
    assert "preset" in out and "7b" in out
    for preset in ("1m", "5m", "25m"):
        assert preset in out
    assert not (tmp_path / "runs").exists()


def test_pretrain_unknown_recipe_exits_2(capsys):
    code, out = run(capsys, "pretrain", "--recipe", "nosuch")
    assert code == 2 and "nosuch" in out and "base" in out


def test_flags_override_the_config_file(tmp_path):
    from ponder.cli import parser
    from ponder.cliargs import build_config
    from ponder.train.lm import LMConfig

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("steps: 5\nbatch_size: 4\n")
    args = parser().parse_args(["pretrain", "--config", str(cfg_file), "--steps", "7"])
    cfg = build_config(LMConfig, args, {"steps": 3, "lr": 0.01})
    assert (cfg.steps, cfg.batch_size, cfg.lr) == (7, 4, 0.01)


def test_chat_answers_questions_read_from_stdin_and_quits_on_an_empty_line():
    import subprocess
    import sys

    questions = "Which is larger, 9.11 or 9.9?\nHow many r are in strawberry?\n\n"
    done = subprocess.run(
        [sys.executable, "-m", "ponder.cli", "chat", "--max-tokens", "48", "--reasoning-effort", "high"],
        input=questions,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("ponder>") == 2  # one answer per question, then a clean exit


def test_chat_reasoning_effort_sets_the_thinking_and_refuses_auto(capsys):
    from ponder.chat import chat_params

    assert chat_params(effort="low").max_thinking_tokens == 1
    high = chat_params(effort="high", temperature=0.9)
    assert high.force_thinking and high.max_thinking_tokens is None and high.temperature == 0
    assert chat_params(temperature=0.9).temperature == 0.9 and not chat_params().force_thinking
    code, out = run(capsys, "chat", "--reasoning-effort", "auto")
    assert code == 2 and "a chat question has no task: use low, medium or high" in out


def test_sft_fine_tunes_the_shipped_base_by_default(tmp_path):
    import json

    from ponder.cli import main

    out = tmp_path / "sft"
    assert main(["sft", "--out", str(out), "--steps", "3", "--batch-size", "4", "--save-every", "3"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["loss_on"] == "completion" and config["init"].endswith("assets/base")
    assert (out / "model" / "model.safetensors").is_file()


def test_demo_runs_every_stage_and_compares_test_time_compute_on_both_models(capsys, tmp_path):
    out = tmp_path / "demo"
    code, text = run(capsys, "demo", "--rl-steps", "2", "--per-task", "1", "--out", str(out))
    assert code == 0, text[-2000:]
    assert (out / "rl" / "model" / "config.json").is_file() and (out / "rl" / "report.html").is_file()
    for label in ("base", "RL"):
        assert (out / "scale" / label / "report.html").is_file()
        assert (out / "scale" / label / "scaling.png").is_file()
    assert "test-time compute on 10 held-out problems" in text
    for row in ("greedy, thinking on", "majority of 8", "pass@8 (oracle)", "auto effort"):
        assert row in text
