"""RLHF pieces: preference pairs from every source, the synthetic rule, the Bradley-Terry reward model
(shared loop with the verifier), its held-out measures, the reward formula, the over-optimisation fits
and early stopping on the gold measure, and RL (GRPO and PPO) against a reward model end to end."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
import torch

from ponder.errors import PonderError
from ponder.rl.rewards import RewardTerm, parse_reward, score
from ponder.rlhf import overopt
from ponder.rlhf.preferences import PreferencePair, load_pairs, read_jsonl, split_pairs, write_jsonl
from ponder.rlhf.reward_model import RewardModel, RewardModelConfig, bt_loss, calibration, train_reward_model
from ponder.rlhf.synthetic import SummaryRule, get_rule, synthetic_pairs
from ponder.tasks import get_task
from ponder.tasks.mix import TaskMix

# ---------------------------------------------------------------------------------------------------
# preference data


def test_jsonl_pairs_round_trip_and_bad_lines_name_the_line(tmp_path):
    pairs = [PreferencePair("Describe the red duck.", "It is calm.", "It is loud.", "jsonl:mine")]
    path = write_jsonl(pairs, tmp_path / "p.jsonl")
    assert read_jsonl(path) == pairs
    assert load_pairs(f"jsonl:{path}") == pairs
    (tmp_path / "bad.jsonl").write_text(
        '{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": 3}\n'
    )
    with pytest.raises(PonderError, match=r"bad.jsonl:2: missing or non-string field\(s\) \['chosen', 'rejected'\]"):
        read_jsonl(tmp_path / "bad.jsonl")
    (tmp_path / "nojson.jsonl").write_text("{oops\n")
    with pytest.raises(PonderError, match="nojson.jsonl:1 is not valid JSON"):
        read_jsonl(tmp_path / "nojson.jsonl")
    with pytest.raises(PonderError, match="synthetic:RULE, jsonl:PATH or feedback:DB"):
        load_pairs("csv:x.csv")


def _completion(store, rid, choice, question, text, messages=None):
    from ponder.format import render_prompt
    from ponder.serve.feedback import CompletionRow

    messages = messages or [{"role": "user", "content": question}]
    row = CompletionRow(rid, choice, "chat.completions", "m", messages, render_prompt(question), text, "", text,
                        None, [], "stop", 3, 0, {})  # fmt: skip
    asyncio.run(store.save_completions([row]))


def test_feedback_thumbs_pair_up_with_downs_and_pairwise_is_taken_as_is(tmp_path):
    from ponder.serve.feedback import FeedbackStore
    from ponder.serve.protocol_feedback import CompletionRef, PairwiseFeedback, ThumbsFeedback

    db = tmp_path / "feedback.sqlite"
    store = FeedbackStore(db)
    _completion(store, "a", 0, "Describe the red duck.", "\n</think>good")
    _completion(store, "a", 1, "Describe the red duck.", "\n</think>bad")
    _completion(store, "b", 0, "Describe the old bell.", "\n</think>only up")  # no down: no pair
    _completion(store, "c", 0, "Write about the big box.", "\n</think>left")
    _completion(store, "c", 1, "Write about the big box.", "\n</think>right")
    turns = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "x"},
    ]
    _completion(store, "d", 0, "x", "\n</think>one", turns)
    _completion(store, "d", 1, "x", "\n</think>two", turns)

    def thumbs(rid, choice, rating):
        return ThumbsFeedback(type="thumbs", completion=CompletionRef(id=rid, choice=choice), rating=rating)

    def prefer(rid, chosen, rejected):
        ref = CompletionRef
        return PairwiseFeedback(
            type="pairwise", chosen=ref(id=rid, choice=chosen), rejected=ref(id=rid, choice=rejected)
        )

    for fb in (thumbs("a", 0, "down"), thumbs("a", 0, "up"), thumbs("a", 1, "down"), thumbs("b", 0, "up"),
               prefer("c", 1, 0), prefer("d", 0, 1)):  # fmt: skip
        asyncio.run(store.record(fb))  # a/0 was re-rated: its latest rating (up) counts
    store.close()
    pairs = load_pairs(f"feedback:{db}")
    assert sorted((p.prompt, p.chosen, p.rejected) for p in pairs) == [
        ("Describe the red duck.", "\n</think>good", "\n</think>bad"),
        ("Write about the big box.", "\n</think>right", "\n</think>left"),
    ]  # the multi-turn pair is skipped
    assert {p.source for p in pairs} == {"feedback:thumbs:api", "feedback:pairwise:api"}
    with pytest.raises(PonderError, match="does not exist"):
        load_pairs(f"feedback:{tmp_path / 'none.sqlite'}")


def test_synthetic_pairs_follow_the_rule_and_length_is_no_shortcut():
    for rule_name in ("summary", "keyword"):
        rule = get_rule(rule_name)
        pairs = synthetic_pairs(rule_name, None, 400, seed=1)
        assert all(rule.follows(p, c) and not rule.follows(p, r) for p, c, r in pairs)
        shorter = sum(len(c) < len(r) for _, c, r in pairs) / len(pairs)
        assert 0.3 < shorter < 0.7, shorter  # chosen is often the shorter side
    train, held = split_pairs(load_pairs("synthetic:summary", count=400))
    assert train and held and not {p.prompt for p in train} & {p.prompt for p in held}
    with pytest.raises(PonderError, match="known rules: keyword, summary"):
        get_rule("politeness")


def test_summary_rule_is_the_gold_check_of_the_pref_task():
    rule, prompt = SummaryRule(), "Describe the red duck."
    assert rule.follows(prompt, "It is calm. In short, the red duck is warm.")
    assert not rule.follows(prompt, "In short, the red duck is warm.")  # a summary of nothing
    assert not rule.follows(prompt, "It is calm. In short, the blue duck is warm.")  # another thing
    assert not rule.follows(prompt, "In short, the red duck is warm. It is calm.")  # not at the end
    assert not rule.follows(prompt, "It is calm. In short, the red duck is. In short, the red duck is warm.")
    task = get_task("pref:summary")
    problems = TaskMix("pref:summary").eval_set(40)
    assert all(p.split == "eval" for p in problems)
    rate = sum(p.meta["follows_rule"] for p in problems) / len(problems)
    assert 0.1 < rate < 0.6  # the unaligned reference answers follow the rule now and then
    p = problems[0]
    subject = p.prompt.split("the ", 1)[1].rstrip(".")
    assert task.score(p, f"\n</think>It is new. In short, the {subject} is new.") == 1.0
    assert task.score(p, "It is new. In short, the {subject} is new.") == 0.0  # thinking never closed


# ---------------------------------------------------------------------------------------------------
# the reward model


def test_bt_loss_matches_hand_computation():
    logits = torch.tensor([2.0, 0.5, -1.0, 1.0])  # (chosen, rejected) x 2
    loss, stats = bt_loss(margin=0.5, center_coef=0.1)(logits, [0, 1, 2, 3])
    bt = -(math.log(1 / (1 + math.exp(-(1.5 - 0.5)))) + math.log(1 / (1 + math.exp(-(-2.0 - 0.5))))) / 2
    centre = 0.1 * ((2.5**2 + 0.0**2) / 2)
    assert loss.item() == pytest.approx(bt + centre, rel=1e-5)
    assert stats["accuracy"] == 0.5 and stats["margin"] == pytest.approx(-0.25)


def test_calibration_counts_each_pair_both_ways():
    cal = calibration([0.0, 0.0, 10.0, -10.0], bins=10)
    by_bin = {tuple(r["bin"]): r for r in cal["bins"]}
    assert by_bin[(0.5, 0.6)]["count"] == 4 and by_bin[(0.5, 0.6)]["observed"] == 0.5  # p = 0.5, both ways
    assert by_bin[(0.9, 1.0)]["count"] == 2 and by_bin[(0.9, 1.0)]["observed"] == 0.5  # one right, one wrong
    assert sum(r["count"] for r in cal["bins"]) == 8
    assert cal["ece"] == pytest.approx(2 * abs(1 / (1 + math.exp(-10)) - 0.5) / 8 * 2, rel=1e-4)


@pytest.fixture(scope="module")
def reward_model_dir(model_dir, tmp_path_factory):
    """A reward model trained on synthetic "summary" pairs from a fresh tiny model, in seconds."""
    out = tmp_path_factory.mktemp("rm") / "rm"
    cfg = RewardModelConfig(out=str(out), policy=str(model_dir), data="synthetic:summary", pairs=300, epochs=3,
                            batch_size=16, lr=3e-3, max_len=96)  # fmt: skip
    seen = []
    train_reward_model(cfg, on_step=seen.append)
    assert len(seen) == seen[-1]["total_steps"] and {"loss", "accuracy", "margin"} <= set(seen[-1])
    return out


def test_reward_model_learns_the_rule_and_saves_a_normalised_sequence_classifier(reward_model_dir):
    from transformers import AutoModelForSequenceClassification

    rm = RewardModel.load(reward_model_dir)
    held = rm.meta["heldout"]
    assert rm.meta["train_pairs"] + rm.meta["heldout_pairs"] == 300 and held["pairs"] == rm.meta["heldout_pairs"]
    assert held["accuracy"] > 0.75, held  # a fresh 1m model, 240 pairs, three epochs
    assert set(held["by_length"]) == {"chosen shorter", "same length", "chosen longer"}
    assert sum(s["pairs"] for s in held["by_length"].values()) == held["pairs"]
    assert 0.3 < held["longer_wins_accuracy"] < 0.7  # the data does not reward length
    assert 0 <= held["calibration"]["ece"] <= 1
    hf = AutoModelForSequenceClassification.from_pretrained(reward_model_dir)
    assert hf.config.num_labels == 1 and hf.config.pad_token_id == rm.tokenizer.pad_token_id
    assert hf.config.reward_std > 0
    texts = ["<|user|>Describe the red duck.<|end|><|assistant|><think>\n\n</think>It is calm."]
    raw = rm.raw_scores(texts)[0]
    assert rm.score_texts(texts)[0] == pytest.approx((raw - hf.config.reward_mean) / hf.config.reward_std)


def test_a_reward_model_directory_is_not_a_verifier_and_vice_versa(reward_model_dir):
    from ponder.ttc.verifier import Verifier

    with pytest.raises(PonderError, match="no verifier.json"):
        Verifier.load(reward_model_dir)
    with pytest.raises(PonderError, match="train one with ponder reward-model"):
        RewardModel.load(reward_model_dir.parent)


def test_no_data_is_an_error_that_names_the_flags(model_dir):
    with pytest.raises(PonderError, match="--data .* --from-feedback"):
        train_reward_model(RewardModelConfig(policy=str(model_dir)))


# ---------------------------------------------------------------------------------------------------
# the reward formula


def test_parse_reward_forms_and_errors():
    assert parse_reward("verifier") == (RewardTerm("verifier"),)
    assert parse_reward("reward-model:runs/rm") == (RewardTerm("reward-model", 1.0, "runs/rm"),)
    assert parse_reward("0.5*verifier + 2*reward-model:a") == (
        RewardTerm("verifier", 0.5),
        RewardTerm("reward-model", 2.0, "a"),
    )
    for bad in ("judge", "reward-model", "x*verifier", "verifier:path"):
        with pytest.raises(PonderError, match="reward term"):
            parse_reward(bad)


def test_score_combines_verifier_and_reward_models_by_the_declared_weights():
    from ponder.engine import Rollout

    problems = TaskMix("arithmetic:1").problems("train", 0, 2)
    groups = [[Rollout(0, [], text=f"\n</think>{p.answer}"), Rollout(0, [], text="\n</think>nope")] for p in problems]

    def fake_rm(problems, groups):
        return [[1.0, -1.0] for _ in groups]

    terms = parse_reward("0.5*verifier+2*reward-model:fake")
    scored = score(problems, groups, terms=terms, models={"fake": fake_rm})
    assert scored.rewards.tolist() == [0.5 + 2.0, -2.0, 0.5 + 2.0, -2.0]
    assert scored.correct.tolist() == [1.0, 0.0, 1.0, 0.0] and scored.proxy.tolist() == [1.0, -1.0, 1.0, -1.0]
    plain = score(problems, groups)
    assert plain.rewards.tolist() == [1.0, 0.0, 1.0, 0.0] and plain.proxy is None


# ---------------------------------------------------------------------------------------------------
# over-optimisation: fits, best-of-n KL, early stopping


def test_fits_recover_the_gao_forms():
    ds = [0.25 * i for i in range(1, 16)]
    bon = overopt.fit_best_of_n(ds, [d * (0.8 - 0.3 * d) for d in ds])
    assert (bon.alpha, bon.beta) == pytest.approx((0.8, 0.3), abs=1e-6)
    assert bon.peak == pytest.approx(0.8 / 0.6)
    rl = overopt.fit_rl(ds, [d * (0.5 - 0.4 * math.log(d)) for d in ds])
    assert (rl.alpha, rl.beta) == pytest.approx((0.5, 0.4), abs=1e-6)
    assert rl.peak == pytest.approx(math.exp(0.5 / 0.4 - 1))
    assert rl(0.0) == 0.0 and overopt.fit_rl([0.0, 1.0], [0.0, 0.1]) is None
    assert overopt.best_of_n_kl(1) == 0.0
    assert overopt.best_of_n_kl(16) == pytest.approx(math.log(16) - 15 / 16)


def test_early_stop_watches_the_gold_never_the_proxy(tmp_path):
    saved = []
    stop = overopt.GoldEarlyStop(2, tmp_path / "best")
    records = [
        {"step": 0, "eval_accuracy": 0.0, "heldout_gold": 0.2, "heldout_proxy": 0.0},
        {"step": 10, "eval_accuracy": 0.0, "heldout_gold": 0.5, "heldout_proxy": 1.0},
        {"step": 20, "eval_accuracy": 0.0, "heldout_gold": 0.4, "heldout_proxy": 2.0},
        {"step": 30, "eval_accuracy": 0.0, "heldout_gold": 0.3, "heldout_proxy": 3.0},
    ]
    assert [stop.update(r, saved.append) for r in records] == [False, False, False, True]
    assert stop.best_step == 10 and saved == [tmp_path / "best"] * 2
    verifier_only = overopt.GoldEarlyStop(1, tmp_path / "b")
    assert not verifier_only.update({"step": 0, "eval_accuracy": 0.5})
    assert verifier_only.update({"step": 5, "eval_accuracy": 0.5})  # not better: stop
    assert not overopt.GoldEarlyStop(0, tmp_path / "c").update(records[0])  # off


# ---------------------------------------------------------------------------------------------------
# RL against the reward model

TINY_RL = dict(tasks="pref:summary", prompts_per_step=4, group_size=4, max_tokens=24, eval_per_task=4, save_every=2)


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_rl_against_a_reward_model_logs_proxy_gold_and_kl_and_reports_them(
    algorithm, model_dir, reward_model_dir, tmp_path
):
    from ponder.rl.report import write_rl_report
    from ponder.train.rl import RLConfig, train_rl

    cfg = RLConfig(out=str(tmp_path / algorithm), init=str(model_dir), algorithm=algorithm, steps=2, eval_every=1,
                   reward=f"reward-model:{reward_model_dir}", best_of_n=4, gold_samples=2, **TINY_RL)  # fmt: skip
    assert cfg.kl_coef == 0.05  # a reward model turns the KL term on by default
    train_rl(cfg)
    records = [json.loads(line) for line in (tmp_path / algorithm / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "reward" in r]
    evals = [r for r in records if "eval_accuracy" in r]
    assert all("proxy" in s and s["reward"] == pytest.approx(s["proxy"], abs=1e-3) for s in steps)
    assert all("kl" in s for s in steps if "loss" in s)
    assert [e["step"] for e in evals] == [0, 1, 2]
    for e in evals:
        assert {"heldout_gold", "heldout_proxy", "heldout_kl"} <= set(e) and 0 <= e["heldout_gold"] <= 1
    assert evals[0]["heldout_kl"] == pytest.approx(0.0, abs=1e-3) and evals[-1]["heldout_kl"] > 0
    bon = json.loads((tmp_path / algorithm / "best_of_n.json").read_text())["points"]
    assert [p["n"] for p in bon] == [1, 2, 4] and bon[0]["kl"] == 0.0
    assert bon[2]["proxy"] >= bon[0]["proxy"]  # picking by the proxy raises the proxy
    html = write_rl_report(tmp_path / algorithm)
    assert (tmp_path / algorithm / "overoptimisation.png").is_file() and "Over-optimisation" in html.read_text()


def test_verifier_reward_keeps_its_defaults():
    from ponder.train.rl import RLConfig

    cfg = RLConfig()
    assert cfg.reward == "verifier" and cfg.kl_coef == 0.0 and not cfg.uses_reward_model
    assert RLConfig(reward="verifier", kl_coef=0.1).kl_coef == 0.1


def test_early_stopping_keeps_the_best_gold_policy(model_dir, reward_model_dir, tmp_path, monkeypatch):
    """Gold made to peak at step 1: the run stops after `early_stop` evals without a better one and
    its final model is the step-1 policy, whatever the proxy did."""
    from safetensors.torch import load_file

    from ponder.train import rl as rl_module
    from ponder.train.rl import RLConfig, train_rl

    golds = iter([0.1, 0.6, 0.4, 0.3, 0.2, 0.1])
    real = rl_module.RLRun.measure_proxy_and_gold

    def scripted(self, step):
        return real(self, step) | {"heldout_gold": next(golds)}

    monkeypatch.setattr(rl_module.RLRun, "measure_proxy_and_gold", scripted)
    cfg = RLConfig(out=str(tmp_path / "run"), init=str(model_dir), steps=6, eval_every=1, early_stop=2,
                   reward=f"reward-model:{reward_model_dir}", gold_samples=1, **TINY_RL)  # fmt: skip
    out = train_rl(cfg)
    evals = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if "eval_acc" in x]
    assert [e["step"] for e in evals] == [0, 1, 2, 3]  # stopped two evals after the best
    best, final = load_file(tmp_path / "run" / "best" / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(torch.equal(best[k], final[k]) for k in best)


def test_cli_reward_model_prints_the_heldout_table(capsys, model_dir, tmp_path, monkeypatch):
    from ponder.cli import main

    monkeypatch.chdir(tmp_path)
    pairs = [PreferencePair(p, c, r, "x") for p, c, r in synthetic_pairs("keyword", None, 60, seed=2)]
    write_jsonl(pairs, tmp_path / "p.jsonl")
    code = main(["reward-model", "--data", "jsonl:p.jsonl", "--policy", str(model_dir), "--epochs", "1",
                 "--out", "rm", "--max-len", "64"])  # fmt: skip
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0, out
    assert "held-out preference pairs" in out and "chosen shorter" in out and "rule 'longer wins'" in out
    assert Path(tmp_path / "rm" / "reward_model.json").is_file()
