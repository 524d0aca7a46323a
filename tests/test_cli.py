"""The command line, run in-process: tables and JSON on success, exit code 2 and a clear message on
bad input."""

from __future__ import annotations

import json
import re

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


def table_row(text: str, label: str) -> tuple[str, str, str]:
    """The accuracy, tokens-per-answer and thinks cells of one row of a printed eval table."""
    found = re.search(rf"{label}\W+([\d.]+%)\W+(\d+)\W+(\d+%)", text)
    assert found, f"no table row for {label!r} in: {text}"
    return found.groups()


def test_eval_prints_a_table_and_writes_json(capsys, tmp_path):
    report = tmp_path / "report.json"
    per_task, cells = 2, {"letters": 2, "decimals": 1}  # letters:1-2 is two (task, difficulty) cells
    # the shipped base: some answers right, some wrong
    code, out = run(
        capsys, "eval", "--per-task", str(per_task), "--tasks", "letters:1-2,decimals:1",
        "--max-tokens", "48", "--json", str(report),
    )  # fmt: skip
    assert code == 0, out
    data = json.loads(report.read_text())
    samples = data["samples"]
    assert data["problems"] == len(samples) == per_task * sum(cells.values())
    assert f"{data['problems']} problems, {data['tokens']} tokens" in out
    assert set(data["by_task"]) == set(cells)
    for task, row in data["by_task"].items():
        scores = [s["score"] for s in samples if s["task"] == task]
        assert row["problems"] == len(scores) == per_task * cells[task]
        assert row["accuracy"] == pytest.approx(sum(scores) / len(scores))
        thought = [s["thought"] for s in samples if s["task"] == task]
        assert row["thinking_share"] == pytest.approx(sum(thought) / len(thought))
        printed = (f"{row['accuracy']:.1%}", f"{row['tokens_per_answer']:.0f}", f"{row['thinking_share']:.0%}")
        assert table_row(out, task) == printed
    means = [row["accuracy"] for row in data["by_task"].values()]
    assert data["overall_accuracy"] == pytest.approx(sum(means) / len(means))  # each task weighs the same
    assert 0 < data["overall_accuracy"] < 1, "the check needs a mix of right and wrong answers"
    assert table_row(out, "overall")[0] == f"{data['overall_accuracy']:.1%}"


@pytest.mark.parametrize("command", ["eval", "scale", "demo", "contamination"])
@pytest.mark.parametrize("count", ["0", "-3"])
def test_a_per_task_count_below_one_exits_2_naming_the_flag(capsys, tmp_path, command, count):
    code, out = run(capsys, command, "--per-task", count)
    assert code == 2
    assert "--per-task" in out and "must be an integer >= 1" in out and f"got {count}" in out
    assert not (tmp_path / "runs").exists()


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
    from ponder.cli.args import build_config
    from ponder.train.lm import LMConfig

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("steps: 5\nbatch_size: 4\n")
    args = parser().parse_args(["pretrain", "--config", str(cfg_file), "--steps", "7"])
    cfg = build_config(LMConfig, args, {"steps": 3, "lr": 0.01})
    assert (cfg.steps, cfg.batch_size, cfg.lr) == (7, 4, 0.01)


def test_scale_takes_tuple_fields_as_lists_and_one_config_file_for_both_classes(tmp_path):
    from ponder.cli import parser
    from ponder.cli.args import build_config
    from ponder.cli.scale import ScaleOptions
    from ponder.ttc.scale import ScaleConfig

    args = parser().parse_args(["scale", "--strategies", "greedy,majority", "--budgets", "1,8", "--budgets", "16"])
    cfg = build_config(ScaleConfig, args)
    assert cfg.strategies == ("greedy", "majority") and cfg.budgets == (1, 8, 16)
    cfg_file = tmp_path / "s.yaml"
    cfg_file.write_text("per_task: 3\nbudgets: [1, 4]\nextend: 8,16\n")
    args = parser().parse_args(["scale", "--config", str(cfg_file)])
    assert build_config(ScaleOptions, args).per_task == 3
    assert (build_config(ScaleConfig, args).budgets, build_config(ScaleConfig, args).extend) == ((1, 4), (8, 16))
    with pytest.raises(SystemExit):
        parser().parse_args(["scale", "--budgets", "1,many"])


def command_configs() -> dict[str, tuple]:
    """Each command and the config classes its flags are made from."""
    from ponder.cli.chat import ChatOptions
    from ponder.cli.contamination import ContaminationOptions
    from ponder.cli.demo import DemoOptions
    from ponder.cli.eval import EvalOptions
    from ponder.cli.scale import ScaleOptions
    from ponder.cli.serve import ServeOptions
    from ponder.rlhf.reward_model import RewardModelConfig
    from ponder.tools.base import ToolConfig
    from ponder.train.lm import LMConfig
    from ponder.train.rl import RLConfig
    from ponder.ttc.scale import ScaleConfig

    return {
        "demo": (DemoOptions,),
        "pretrain": (LMConfig,),
        "sft": (LMConfig,),
        "rl": (RLConfig,),
        "reward-model": (RewardModelConfig,),
        "eval": (EvalOptions,),
        "chat": (ChatOptions,),
        "scale": (ScaleOptions, ScaleConfig),
        "contamination": (ContaminationOptions,),
        "tool": (ToolConfig,),
        "serve": (ServeOptions,),
    }


POSITIONAL = {"tool": ["python"]}  # a command's required positional arguments


def help_entries(text: str) -> dict[str, str]:
    """`--flag` -> its help text with all whitespace removed (argparse wraps anywhere)."""
    entries: dict[str, str] = {}
    flag = None
    for line in text.split("options:", 1)[1].splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
        if flag:
            entries[flag] = entries.get(flag, "") + "".join(line.split())
    return entries


def test_every_command_help_lists_its_config_fields_with_the_dataclass_default(capsys, monkeypatch):
    import dataclasses

    from ponder.cli import parser
    from ponder.cli.args import build_config, default_text, field_default
    from ponder.cli.train import BASES

    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        parser().parse_args(["--help"])
    listed = set(re.search(r"\{([a-z,-]+)\}", capsys.readouterr().out).group(1).split(","))
    assert listed == set(command_configs()), "a new command needs its config classes listed here"
    for command, classes in command_configs().items():
        with pytest.raises(SystemExit):
            parser().parse_args([command, "--help"])
        entries = help_entries(capsys.readouterr().out)
        for cls in classes:
            for f in dataclasses.fields(cls):
                if command in BASES and f.name == "loss_on":
                    continue  # set by the command itself
                default = BASES.get(command, {}).get(f.name, field_default(f))
                shown = "".join(f"(default: {default_text(default)})".split())
                assert shown in entries.get("--" + f.name.replace("_", "-"), ""), (command, f.name, shown)
            args = parser().parse_args([command, *POSITIONAL.get(command, [])])
            assert build_config(cls, args, BASES.get(command)) == cls(**BASES.get(command, {}))


def test_command_modules_share_helpers_instead_of_importing_each_other():
    import ast
    from pathlib import Path

    from ponder.cli import COMMAND_MODULES

    root = Path(__file__).resolve().parents[1]
    commands = {f"ponder.cli.{name}" for name in COMMAND_MODULES}

    def imports(path: Path) -> set[str]:
        tree = ast.parse(path.read_text())
        found = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        return found | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}

    for name in COMMAND_MODULES:
        assert not imports(root / "ponder" / "cli" / f"{name}.py") & commands, name
    for script in (root / "scripts").glob("*.py"):
        assert {m for m in imports(script) if m.startswith("ponder.cli")} <= {"ponder.cli.console"}, script.name


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


def test_chat_reasoning_effort_sets_the_thinking_and_auto_votes_over_samples():
    from ponder.cli.chat import ChatOptions, chat_params

    assert chat_params(ChatOptions(reasoning_effort="low")).max_thinking_tokens == 1
    high = chat_params(ChatOptions(reasoning_effort="high", temperature=0.9))
    assert high.force_thinking and high.max_thinking_tokens is None and high.temperature == 0
    plain = chat_params(ChatOptions(temperature=0.9))
    assert plain.temperature == 0.9 and plain.max_tokens == ChatOptions().max_tokens and not plain.force_thinking
    from ponder import model as models
    from ponder.assets import base_model_path
    from ponder.cli.chat import answer
    from ponder.engine import Engine

    engine = Engine(*models.load(base_model_path()))
    calls = []
    generate = engine.generate
    engine.generate = lambda prompts, p, **kw: calls.append(p) or generate(prompts, p, **kw)
    parsed = answer(engine, "Compute 27+56.", chat_params(ChatOptions(reasoning_effort="auto")), "auto")
    assert parsed.closed_thinking and parsed.answer
    # auto: the greedy anchor with thinking on, then at least one sampled round to vote with
    assert calls[0].temperature == 0 and calls[0].force_thinking and len(calls) >= 2 and calls[1].temperature == 1


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
