"""The RLHF loop closed end to end on a tiny model, in seconds (docs/rlhf.md, "The closed loop"):

    serve a policy -> users ask, then rate its answers (thumbs, pairwise) over POST /v1/feedback
    -> `ponder reward-model --from-feedback DB` -> `ponder rl --reward reward-model:DIR`
    -> serve the new policy, with the new reward model ranking its samples.

The users are simulated by a declared preference (they prefer the shorter of two replies), so the
test is deterministic in what they say (they read the thinking too: a fresh 1m Llama rarely closes
it within 16 tokens, so its answers are mostly empty).
"""

from __future__ import annotations

import json
import urllib.request

import openai
import torch

from ponder.cli import main
from ponder.cli.serve import ServeOptions, build_state
from ponder.serve.background import BackgroundServer
from ponder.tasks.mix import TaskMix


def serving(model_dir, db, reward_model=None) -> BackgroundServer:
    """What `ponder serve --model DIR --feedback-db DB [--reward-model RM]` runs, on a free port."""
    options = ServeOptions(
        model=str(model_dir), served_model_name="policy", feedback_db=str(db), reward_model=reward_model, device="cpu"
    )
    return BackgroundServer(build_state(options))


def post_feedback(server: BackgroundServer, body: dict) -> None:
    request = urllib.request.Request(
        f"{server.base_url}/feedback", json.dumps(body).encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 200 and json.loads(reply.read())["object"] == "feedback"


def extra(message, name: str) -> str:
    return (message.model_extra or {}).get(name) or ""


def users_rate(server: BackgroundServer, prompts: list[str]) -> int:
    """Each user asks once for two replies and says which is better: by thumbs on even prompts, by a
    pairwise preference on odd ones. Returns how many preferences were given (ties are skipped)."""
    client = openai.OpenAI(base_url=server.base_url, api_key="-", max_retries=0, timeout=60)
    given = 0
    for i, prompt in enumerate(prompts):
        reply = client.chat.completions.create(
            model="policy", messages=[{"role": "user", "content": prompt}], n=2, max_tokens=16, temperature=1.0,
            seed=i, extra_body={"ponder": {"show_thinking": True}},
        )  # fmt: skip
        lengths = [len(c.message.content or "") + len(extra(c.message, "reasoning_content")) for c in reply.choices]
        if lengths[0] == lengths[1]:
            continue
        better, worse = (0, 1) if lengths[0] < lengths[1] else (1, 0)
        if i % 2 == 0:
            for choice, rating in ((better, "up"), (worse, "down")):
                ref = {"id": reply.id, "choice": choice}
                post_feedback(server, {"type": "thumbs", "completion": ref, "rating": rating, "source": "test"})
        else:
            chosen, rejected = {"id": reply.id, "choice": better}, {"id": reply.id, "choice": worse}
            post_feedback(server, {"type": "pairwise", "chosen": chosen, "rejected": rejected, "source": "test"})
        given += 1
    return given


def test_serve_feedback_reward_model_rl_serve(model_dir, tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file

    monkeypatch.chdir(tmp_path)
    db = tmp_path / "feedback.sqlite"
    prompts = [p.prompt for p in TaskMix("pref:summary").problems("train", 0, 12)]
    # 1) serve; users ask and rate
    with serving(model_dir, db) as server:
        given = users_rate(server, prompts)
    assert given >= 6, "too many ties: the check needs preferences"
    # 2) a reward model from the served feedback
    code = main(["reward-model", "--from-feedback", str(db), "--policy", str(model_dir), "--out", "rm",
                 "--epochs", "2", "--batch-size", "4", "--max-len", "96"])  # fmt: skip
    assert code == 0, capsys.readouterr().out
    meta = json.loads((tmp_path / "rm" / "reward_model.json").read_text())
    assert meta["train_pairs"] + meta["heldout_pairs"] == given
    assert set(meta["sources"]) <= {"feedback:thumbs:test", "feedback:pairwise:test"}
    # 3) RL against it (KL to the start on by default), the gold measure being the summary rule
    code = main(["rl", "--init", str(model_dir), "--reward", "reward-model:rm", "--tasks", "pref:summary",
                 "--steps", "2", "--prompts-per-step", "4", "--group-size", "4", "--max-tokens", "16",
                 "--eval-per-task", "2", "--gold-samples", "1", "--out", "rl"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    records = [json.loads(line) for line in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert json.loads((tmp_path / "rl" / "config.json").read_text())["kl_coef"] == 0.05
    assert all("proxy" in r for r in records if "reward" in r)
    assert "heldout_proxy" in records[-1] and (tmp_path / "rl" / "overoptimisation.png").is_file()
    old, new = load_file(model_dir / "model.safetensors"), load_file(tmp_path / "rl" / "model" / "model.safetensors")
    assert any(not torch.equal(old[k], new[k]) for k in old), "RL left the policy unchanged"
    # 4) serve the new policy, its samples ranked by the new reward model
    with serving(tmp_path / "rl" / "model", tmp_path / "feedback2.sqlite", reward_model=str(tmp_path / "rm")) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="-", max_retries=0, timeout=60)
        reply = client.chat.completions.create(
            model="policy", messages=[{"role": "user", "content": prompts[0]}], max_tokens=16,
            extra_body={"ponder": {"best_of": 3, "rank": "reward_model"}},
        )  # fmt: skip
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_reward_model_from_a_missing_database_exits_2_naming_it(capsys, tmp_path, model_dir):
    code = main(["reward-model", "--from-feedback", str(tmp_path / "feedback.sqlite"), "--policy", str(model_dir)])
    assert code == 2
    assert "does not exist" in " ".join(capsys.readouterr().out.split())
