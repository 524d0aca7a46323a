"""The GPU path, checked on a CPU: the 0.5B preset, SDPA attention, gradient checkpointing (same loss
and gradients, layers really recomputed), the memory estimate's arithmetic, the KV cache sized from
free memory, MFU, and the device errors. No test here needs a GPU; the GPU numbers are in docs/gpu.md
as commands to run, not as results."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import TINY_TRAIN, read_metrics

from ponder import model as models
from ponder.corpus import examples
from ponder.engine import Engine, Rollout, SamplingParams
from ponder.engine import engine as engine_module
from ponder.engine.budget import KVShape, rows_that_fit
from ponder.errors import PonderError
from ponder.rl.batch import RolloutBatch, token_logprobs
from ponder.tasks.mix import TaskMix
from ponder.train import memory
from ponder.train.flops import FlopMeter, lookup_peak_tflops, matmul_parameters, peak_flops
from ponder.train.lm import LMConfig, collate, enable_gradient_checkpointing, resolve_device, train_lm

GIB = 2**30


class VocabOnly:
    """What `new_model` reads from a tokenizer: a vocabulary size and special token ids."""

    bos_token_id, eos_token_id, pad_token_id = None, 2, 5

    def __init__(self, size: int):
        self.size = size

    def __len__(self):
        return self.size


# --- the 0.5B preset and SDPA ----------------------------------------------------------------------


def test_500m_preset_is_qwen25_05b_shaped_and_half_a_billion_parameters_at_its_vocabulary():
    # by hand, per layer: q, o 896x896; k, v 896x128; gate, up, down 896x4864; two norms of 896
    layer = 2 * 896 * 896 + 2 * 896 * 128 + 3 * 896 * 4864 + 2 * 896
    with torch.device("meta"):
        qwen_vocab = models.new_model("500m", VocabOnly(151_936))
        own_vocab = models.new_model("500m", VocabOnly(512))
    assert models.count_parameters(qwen_vocab) == 24 * layer + 151_936 * 896 + 896 == 494_005_120  # ~0.49B
    assert models.count_parameters(own_vocab) == 24 * layer + 512 * 896 + 896 == 358_329_216
    config = qwen_vocab.config
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (14, 2, 64)
    assert config.tie_word_embeddings


def test_models_ponder_builds_and_loads_train_with_sdpa(tok, model_dir):
    assert models.new_model("1m", tok).config._attn_implementation == "sdpa"
    assert models.load(model_dir)[0].config._attn_implementation == "sdpa"


def test_an_architecture_without_sdpa_loads_with_its_default_attention(model_dir, monkeypatch):
    from transformers import LlamaForCausalLM

    monkeypatch.setattr(LlamaForCausalLM, "_supports_sdpa", False)
    model, _ = models.load(model_dir)
    assert model.config._attn_implementation == "eager"


# --- gradient checkpointing ------------------------------------------------------------------------


def _count_mlp_calls(model) -> list[int]:
    """A counter of the first layer's MLP calls: a checkpointed layer runs it again in the backward.
    (A pre-hook: the recompute stops once the tensors the backward needs exist, inside the MLP.)"""
    calls = [0]
    model.model.layers[0].mlp.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def _loss_and_grads(model, inputs):
    model.zero_grad(set_to_none=True)
    loss = model(**inputs, use_cache=False).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_gradient_checkpointing_gives_the_same_loss_and_gradients_and_recomputes_the_layers(tok):
    plain = models.new_model("1m", tok, seed=3).train()
    checkpointed = copy.deepcopy(plain)
    enable_gradient_checkpointing(checkpointed)
    batch = examples(TaskMix("arithmetic:1-2,letters:1"), 0, 4, mistake_rate=0.0)
    inputs = collate(batch, tok, "all", max_len=96, device="cpu")
    plain_calls, checkpointed_calls = _count_mlp_calls(plain), _count_mlp_calls(checkpointed)
    loss, grads = _loss_and_grads(plain, inputs)
    loss_ckpt, grads_ckpt = _loss_and_grads(checkpointed, inputs)
    assert (plain_calls[0], checkpointed_calls[0]) == (1, 2)  # off: once; on: forward + recompute
    torch.testing.assert_close(loss_ckpt, loss, rtol=0, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_gradient_checkpointing_gives_the_same_rl_log_probs_and_gradients(tok):
    plain = models.new_model("1m", tok, seed=4).train()
    checkpointed = copy.deepcopy(plain)
    enable_gradient_checkpointing(checkpointed)
    rollouts = [
        Rollout(0, tok.encode("What is 2+3?"), token_ids=[5, 6, 7, 8], logprobs=[-1.0] * 4, mask=[1, 1, 0, 1]),
        Rollout(1, tok.encode("Spell it"), token_ids=[9, 10], logprobs=[-2.0] * 2, mask=[1, 1]),
    ]
    batch = RolloutBatch.build(rollouts, "cpu")
    results = []
    for model in (plain, checkpointed):
        model.zero_grad(set_to_none=True)
        out = token_logprobs(model, batch)
        (out.logprobs * batch.mask).sum().backward()
        results.append((out.logprobs.detach(), [p.grad.clone() for p in model.parameters()]))
    (lp, grads), (lp_ckpt, grads_ckpt) = results
    torch.testing.assert_close(lp_ckpt, lp, rtol=0, atol=1e-6)
    for g, g_ckpt in zip(grads, grads_ckpt, strict=True):
        torch.testing.assert_close(g_ckpt, g, rtol=1e-5, atol=1e-7)


def test_a_pretrain_run_with_checkpointing_and_a_given_peak_reports_mfu(tmp_path):
    cfg = LMConfig(out=str(tmp_path / "run"), steps=2, save_every=2, gradient_checkpointing=True, peak_tflops=0.5,
                   **TINY_TRAIN)  # fmt: skip
    train_lm(cfg)
    model, _ = models.load(tmp_path / "run" / "model")
    n = matmul_parameters(model)
    for m in read_metrics(tmp_path / "run"):
        assert m["mfu"] == pytest.approx(6 * n * m["tokens_per_s"] / 0.5e12, rel=1e-2)
        assert "peak_mem_gib" not in m  # a GPU-only measurement


def test_rl_turns_checkpointing_on_and_reports_generation_and_update_mfu(tmp_path):
    from ponder.train.rl import RLConfig, RLRun, rl_step

    cfg = RLConfig(out=str(tmp_path / "rl"), tasks="letters:1", prompts_per_step=2, group_size=2, max_tokens=12,
                   eval_per_task=1, algorithm="reinforce_pp", gradient_checkpointing=True, peak_tflops=0.5,
                   device="cpu")  # fmt: skip
    run = RLRun(cfg, resume=False)
    assert all(layer.gradient_checkpointing for layer in run.model.model.layers)
    metrics = rl_step(run, 0)
    assert "loss" in metrics and {"gen_mfu", "train_mfu", "mfu"} <= set(metrics)
    assert 0 < metrics["mfu"] < 1 and metrics["gen_mfu"] > 0 and metrics["train_mfu"] > 0


# --- MFU arithmetic --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, tflops",
    [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA L4", 121.0),
        ("Tesla T4", None),
    ],
)
def test_gpu_peaks_are_looked_up_by_name_longest_name_first(name, tflops):
    assert lookup_peak_tflops(name) == tflops


def test_mfu_arithmetic():
    meter = FlopMeter(params=1_000_000, peak=1e12)
    # training: 6 FLOPs per parameter per token; 1000 tokens in 0.5 s
    assert meter.training(1000, 0.5) == {"mfu": round(6 * 1e6 * 1000 / 0.5 / 1e12, 5)}
    rl = meter.rl(gen_tokens=500, gen_s=0.25, train_tokens=400, forward_passes=4, train_s=0.5)
    gen, train = 2 * 1e6 * 500, 2 * 1e6 * 400 * 4
    assert rl == {
        "gen_mfu": round(gen / 0.25 / 1e12, 5),
        "train_mfu": round(train / 0.5 / 1e12, 5),
        "mfu": round((gen + train) / 0.75 / 1e12, 5),
    }
    assert FlopMeter(params=10, peak=None).training(1000, 1.0) == {}  # no peak, no MFU


def test_peak_is_given_or_looked_up_and_absent_on_a_cpu():
    assert peak_flops(torch.device("cpu")) is None
    assert peak_flops(torch.device("cpu"), 2.5) == 2.5e12


def test_matmul_parameters_leave_out_an_untied_input_embedding(tok):
    tied = models.new_model("1m", tok)
    assert matmul_parameters(tied) == models.count_parameters(tied)
    config = models.preset_config("1m", len(tok))
    config.tie_word_embeddings = False
    from transformers import AutoModelForCausalLM

    untied = AutoModelForCausalLM.from_config(config)
    assert matmul_parameters(untied) == models.count_parameters(untied) - len(tok) * 128


# --- the memory estimate ---------------------------------------------------------------------------


def test_memory_estimate_matches_a_hand_computation_for_the_1m_preset():
    shape = memory.ModelShape.of_config(models.preset_config("1m", 512))
    # 4 layers of (4 x 128^2 attention + 3 x 128 x 384 MLP + 2 x 128 norms), 512 x 128 tied embedding, final norm
    assert shape == memory.ModelShape(params=918_656, layers=4, hidden=128, kv_dim=128, mlp=384, vocab=512)
    n = 918_656
    # bf16 (2 B a value): per layer 2 x (5 x 128 + 3 x 128 + 4 x 384) + 8 x 128 = 6144; logits 512 x (2 + 8)
    per_token = 4 * 6144 + 512 * 10
    est = memory.estimate(shape, train_tokens=8 * 64, bf16=True, checkpointing=False)
    size = {name: b for name, b, _ in est.parts}
    assert size["weights (fp32)"] == size["gradients (fp32)"] == 4 * n
    assert size["AdamW states (fp32)"] == 8 * n and size["bf16 weight copies"] == 2 * n
    assert size["activations / micro-batch"] == 512 * per_token == 15_204_352
    assert est.peak == 16 * n + 2 * n + 512 * per_token == 31_740_160
    # checkpointed: each layer's fp32 input (4 x 128 B), one layer recomputed, the logits
    ckpt = memory.estimate(shape, train_tokens=512, bf16=True, checkpointing=True)
    assert dict((k, b) for k, b, _ in ckpt.parts)["activations / micro-batch"] == 512 * (4 * 4 * 128 + 6144 + 5120)
    # RL: a reference, and 4 rollout rows of 100 tokens: 4 layers x 2 x 128 x 4 B per token, + sampler
    rl = memory.estimate(shape, 512, bf16=False, checkpointing=False, reference=True, kv_rows=4, kv_length=100)
    rl_size = {name: b for name, b, _ in rl.parts}
    assert rl_size["rollout KV cache"] == 4 * (100 * 4 * 2 * 128 * 4 + 512 * 32) == 1_703_936
    fp32_token = 4 * (4 * (5 * 128 + 3 * 128 + 4 * 384) + 8 * 128) + 512 * (4 + 8)  # no autocast: 4 B a value
    assert rl.peak == 20 * n + max(512 * fp32_token, 1_703_936) == 44_587_520


def test_memory_estimate_warns_when_it_exceeds_the_free_memory():
    shape = memory.ModelShape.of_config(models.preset_config("1m", 512))
    roomy = memory.estimate(shape, 512, True, False, device=memory.DeviceMemory(GIB, "test: 1 GiB"))
    assert roomy.fits and roomy.warning() is None
    tight = memory.estimate(shape, 512, True, False, device=memory.DeviceMemory(10**6, "test: 1 MB"))
    assert tight.fits is False and "--gradient-checkpointing" in tight.warning() and "test: 1 MB" in tight.warning()
    assert memory.estimate(shape, 512, True, False).fits is None  # device unknown: no verdict


def test_the_one_gpu_500m_recipe_fits_an_80_gib_gpu_as_docs_gpu_md_says():
    from ponder.recipes import recipe

    cfg = LMConfig(**recipe("gpu-500m", "pretrain"))
    est = memory.estimate_lm(cfg, torch.device("cuda"))  # a device object only: nothing is allocated
    assert cfg.preset == "500m" and cfg.autocast == "bf16"
    assert 10 * GIB < est.peak < 0.85 * 80 * GIB


def test_rl_estimate_reads_the_model_and_its_prompts(tmp_path):
    from ponder.assets import base_model_path
    from ponder.train.rl import RLConfig

    cfg = RLConfig(out=str(tmp_path / "rl"), prompts_per_step=8, group_size=4, max_tokens=100, minibatches=2)
    est = memory.estimate_rl(cfg, torch.device("cpu"))
    prompt = memory.prompt_tokens(base_model_path(), cfg.tasks)
    assert prompt > 10
    how = {name: text for name, _, text in est.parts}
    assert how["rollout KV cache"].startswith(f"32 rows x {prompt + 100} tokens")  # every sample of a step
    assert how["activations / micro-batch"].startswith(f"{16 * (prompt + 100):,} tokens")  # one of 2 minibatches
    assert how["reference policy"] == "none"  # no KL term, no reward model


def test_pretrain_prints_the_memory_estimate_before_it_starts(capsys, tmp_path):
    from ponder.cli import main

    args = ["--steps", "1", "--batch-size", "2", "--max-len", "32", "--vocab-size", "256", "--device", "cpu"]
    assert main(["pretrain", "--out", str(tmp_path / "run"), *args]) == 0
    out = capsys.readouterr().out
    assert "memory estimate" in out and "peak" in out and "host memory" in out
    assert out.index("memory estimate") < out.index("model saved")


def test_rl_prints_the_memory_estimate_with_the_rollout_kv_cache_before_it_starts(capsys, tmp_path):
    from ponder.cli import main

    args = ["--steps", "1", "--prompts-per-step", "2", "--group-size", "2", "--max-tokens", "8", "--eval-per-task",
            "1", "--tasks", "letters:1", "--device", "cpu"]  # fmt: skip
    assert main(["rl", "--out", str(tmp_path / "rl"), *args]) == 0
    out = capsys.readouterr().out
    assert "memory estimate" in out and "4 rows x" in out  # every sample of a step: 2 prompts x 2
    assert out.index("memory estimate") < out.index("policy saved")


# --- the KV cache sized to the device --------------------------------------------------------------


def test_rows_that_fit_the_free_memory():
    shape = KVShape(layers=24, kv_heads=2, head_dim=64, dtype_bytes=4, vocab=151_936)  # the 500m preset, fp32
    per_row = 24 * 2 * 2 * 64 * 4 * 768 + 151_936 * 32  # 767 tokens + the spare slot, + the sampler
    assert shape.bytes_per_row(767) == per_row == 23_736_320
    assert rows_that_fit(10 * GIB, shape, 767, limit=1024) == int(10 * GIB * 0.9) // per_row == 407
    assert rows_that_fit(80 * GIB, shape, 767, limit=1024) == 1024  # the limit binds
    assert rows_that_fit(10**6, shape, 767, limit=1024) == 1  # never zero


def test_engine_keeps_its_row_limit_on_a_cpu_and_sizes_rows_from_free_memory_on_a_gpu(model, tok, monkeypatch):
    engine = Engine(model, tok)
    assert engine.max_batch == 256 and engine.rows_for(10_000) == 256  # CPU: unchanged
    monkeypatch.setattr(Engine, "device", property(lambda self: torch.device("cuda")))
    monkeypatch.setattr(engine_module, "cuda_free_bytes", lambda device: 2 * GIB)
    expected = rows_that_fit(2 * GIB, KVShape.of(model), 10_000, limit=256)
    assert engine.rows_for(10_000) == expected < 256


def test_generate_runs_no_more_rows_at_once_than_rows_for_allows(model, tok):
    engine = Engine(model, tok)
    prompts = [engine.format.prompt(q) for q in ("Compute 2+3.", "Compute 7+8.", "Spell cat.")]
    params = SamplingParams(n=2, temperature=1.0, max_tokens=12, seed=5)
    unlimited = engine.generate(prompts, params)
    asked = []
    engine.rows_for = lambda length: asked.append(length) or 2
    limited = engine.generate(prompts, params)
    assert asked == [max(len(engine.encode(p)) for p in prompts) + 12 + 1]
    assert [[r.token_ids for r in g] for g in limited] == [[r.token_ids for r in g] for g in unlimited]


# --- the measuring script -------------------------------------------------------------------------


def test_bench_gpu_measures_pretrain_and_rl_throughput_and_mfu(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_gpu", Path(__file__).parents[1] / "bench" / "gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--preset", "1m", "--steps", "3", "--batch-size", "4", "--max-len", "64", "--rl-steps", "3",
            "--prompts-per-step", "2", "--group-size", "2", "--max-tokens", "16", "--minibatches", "1", "--skip", "1",
            "--peak-tflops", "1", "--device", "cpu", "--out", str(tmp_path / "bench")]  # fmt: skip
    result = bench.main(argv)
    written = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert {"pretrain": written["pretrain"], "rl": written["rl"]} == result and written["device"] == "cpu"
    measured = {"pretrain": ("tokens_per_s", "mfu"),
                "rl": ("gen_tokens_per_s", "train_tokens_per_s", "gen_mfu", "train_mfu", "mfu")}  # fmt: skip
    for phase, keys in measured.items():
        for key in keys:
            assert result[phase][key] > 0, (phase, key)
        assert result[phase]["peak_mem_gib"] is None and result[phase]["estimate_gib"] > 0  # no GPU here
    with pytest.raises(SystemExit):
        bench.parse_args(["--steps", "2", "--skip", "2"])  # nothing left to time


# --- devices ---------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_asking_for_cuda_without_a_gpu_names_the_fix():
    with pytest.raises(PonderError, match=r"sees no GPU.*docs/gpu.md.*--device cpu"):
        resolve_device("cuda")


def test_a_bad_device_name_lists_the_allowed_ones():
    with pytest.raises(PonderError, match=r"auto, cpu, cuda or cuda:N, got 'gpu0'"):
        resolve_device("gpu0")


def test_config_fields_of_the_gpu_path_are_validated():
    with pytest.raises(PonderError, match="peak_tflops must be >= 0"):
        LMConfig(peak_tflops=-1)
    from ponder.train.rl import RLConfig

    with pytest.raises(PonderError, match="peak_tflops must be >= 0"):
        RLConfig(peak_tflops=-1)
