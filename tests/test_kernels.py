"""The decode loop's CPU fast paths: ponder's compiled decode step (ponder/engine/csrc) gives what
the runner's torch step gives (Llama, Qwen2's QKV bias, Qwen3's q/k norms, grouped heads, scattered
slots, rows of different lengths, both sides of the packed-linear threshold); its attention gives
softmax over matmuls; it can be switched off; a linear layer with oneDNN-packed weights gives what
F.linear gives."""

from __future__ import annotations

import random

import pytest
import torch

from ponder.engine.kernels import decode_kernels


@pytest.fixture(scope="module")
def kernels():
    module = decode_kernels()
    if module is None:
        pytest.skip("the compiled step could not be built here (no C++ compiler or ninja); the torch step runs")
    return module


@pytest.mark.parametrize(("rows", "kv_heads", "group", "length"), [(1, 4, 1, 7), (5, 2, 3, 70), (16, 4, 1, 200)])
def test_the_attention_equals_softmax_over_matmuls(kernels, rows, kv_heads, group, length):
    torch.manual_seed(rows + length)
    pool_rows, capacity, dim = rows + 3, length + 9, 32
    k_pool, v_pool = torch.randn(2, pool_rows, kv_heads, capacity + 1, dim).unbind(0)
    slots = torch.randperm(pool_rows)[:rows]  # any pool rows, in any order
    positions = torch.randint(0, length, (rows,))
    positions[0] = length - 1
    bias = torch.full((pool_rows, capacity + 1), float("-inf"))
    for slot, position in zip(slots, positions, strict=True):
        bias[slot, : position + 1] = 0.0
        bias[slot, position // 2 : position : 3] = float("-inf")  # keys a row may not see
    q = torch.randn(rows, kv_heads * group * dim) * 3
    out = kernels.decode_attention(q, slots, positions, k_pool, v_pool, bias, kv_heads * group, 0.2)
    for b, (slot, position) in enumerate(zip(slots, positions, strict=True)):
        keys, values = k_pool[slot, :, : position + 1], v_pool[slot, :, : position + 1]  # (kv, L, D)
        scores = q[b].view(kv_heads, group, dim) @ keys.transpose(-1, -2) * 0.2 + bias[slot, : position + 1]
        expected = (scores.softmax(-1) @ values).reshape(-1)
        torch.testing.assert_close(out[b], expected, rtol=1e-5, atol=1e-6)


def random_model(model_type: str, vocab: int = 97):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        model_type, vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # biases and norm weights too: none left at 0 or 1
            p.normal_(0.0, 0.3)
    return model


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("rows", [3, 60])  # under and over the packed linears' threshold
@pytest.mark.parametrize("joining", [False, True])  # a decode step alone, or with prompts joining
def test_the_compiled_step_gives_what_the_torch_step_gives(kernels, model_type, rows, joining):
    """One token for each of `rows` running rows at scattered slots and positions, and (`joining`)
    in the same call a new prompt, a continued chunk (a tool's output) and a one-token prompt."""
    from ponder.engine.runner import LlamaRunner

    runner = LlamaRunner(random_model(model_type))
    assert runner.step_args is not None, "a float32 model on a CPU should take the compiled step"
    random.seed(rows)
    slots = random.sample(range(80), rows + 3)
    starts = [random.randint(0, 60) for _ in slots]
    chunks = [[random.randrange(97)] for _ in slots]
    if joining:
        starts[-3:] = [0, 17, 0]
        chunks[-3:] = [random.choices(range(97), k=n) for n in (9, 5, 1)]
    else:
        slots, starts, chunks = slots[:rows], starts[:rows], chunks[:rows]
    pools = []
    for _ in range(2):  # the same history in two pools: a key at each earlier position of each row
        pool = runner.new_pool()
        pool.allocate(80, 80)
        torch.manual_seed(1)
        with torch.inference_mode():
            for t in pool.k + pool.v:
                t.normal_()
            for slot, start in zip(slots, starts, strict=True):
                pool.bias[slot, :start] = 0.0
        pools.append(pool)
    compiled = runner.forward(pools[0], slots, chunks, starts)
    runner.step_args = None  # torch's step: decode for the one-token chunks, prefill for the others
    reference = runner.forward(pools[1], slots, chunks, starts)
    torch.testing.assert_close(compiled, reference, rtol=1e-4, atol=1e-4)
    for a, b in zip(pools[0].k + pools[0].v, pools[1].k + pools[1].v, strict=True):
        # the same keys and values written (the spare slot, index 80, holds the torch step's idle rows)
        torch.testing.assert_close(a[:, :, :80], b[:, :, :80], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pools[0].bias[:, :80], pools[1].bias[:, :80])


def test_the_engine_decodes_through_the_compiled_step_on_a_cpu(kernels, trained):
    from ponder.engine import Engine

    runner = Engine(*trained).runner
    assert runner.compiled is kernels and runner.step_args is not None


def test_the_switch_turns_the_compiled_step_off(monkeypatch):
    monkeypatch.setenv("PONDER_DECODE_KERNEL", "0")
    assert decode_kernels.__wrapped__() is None


@pytest.mark.parametrize("rows", [1, 12, 13, 64])  # both sides of PACKED_MIN_MACS (12.2 rows here)
def test_a_packed_linear_gives_what_f_linear_gives(rows):
    from ponder.engine.linear import Linear

    torch.manual_seed(rows)
    weight, bias = torch.randn(384, 128), torch.randn(384)
    linear = Linear(weight, bias, pack=True)
    if linear.packed is None:
        pytest.skip("this torch has no oneDNN packed linear; the engine uses F.linear")
    x = torch.randn(rows, 1, 128)
    with torch.inference_mode():
        out = linear(x)
    assert out.shape == (rows, 1, 384)
    torch.testing.assert_close(out, torch.nn.functional.linear(x, weight, bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("rows", "out", "inp"), [(1, 384, 128), (7, 100, 70), (13, 768, 128), (64, 17, 384)])
def test_our_matrix_multiply_gives_what_f_linear_gives(kernels, rows, out, inp):
    """csrc/gemm.h: every tile shape (1-6 rows, 1-4 panels, a partial last panel), with a bias."""
    from ponder.engine.linear import Linear

    torch.manual_seed(rows)
    weight, bias = torch.randn(out, inp), torch.randn(out)
    linear = Linear(weight, bias, pack=True, kernels=kernels)
    if linear.ours is None:
        pytest.skip("this CPU has no AVX-512: the engine uses oneDNN or F.linear")
    x = torch.randn(rows, inp)
    with torch.inference_mode():
        out_ours = linear(x)
    torch.testing.assert_close(out_ours, torch.nn.functional.linear(x, weight, bias), rtol=1e-5, atol=1e-4)


def test_a_built_kernel_is_imported_without_torch_s_build_lock(kernels, monkeypatch):
    """Once built, later processes import the library directly: no lock, no ninja run (a process
    killed inside torch's `load` leaves a lock every later `load` waits on forever)."""
    from torch.utils import cpp_extension

    def no_build(*args, **kwargs):
        raise AssertionError("torch's load() ran for a kernel that is already built")

    monkeypatch.setattr(cpp_extension, "load", no_build)
    assert decode_kernels.__wrapped__() is not None


def test_a_lock_left_by_an_interrupted_build_is_removed_once_stale(tmp_path):
    import os
    import time

    from ponder.engine.kernels import STALE_LOCK_S, _clear_stale_lock

    lock = tmp_path / "lock"
    lock.touch()
    _clear_stale_lock(tmp_path)
    assert lock.exists(), "a build may hold a fresh lock"
    old = time.time() - STALE_LOCK_S - 1
    os.utime(lock, (old, old))
    _clear_stale_lock(tmp_path)
    assert not lock.exists()


def test_torch_s_step_on_a_pool_made_for_the_compiled_one_reads_no_garbage(kernels):
    """A CPU pool is left uninitialised for the compiled step; if torch's step runs on it later (the
    weights changed dtype), the slots no one wrote must not turn its masked reads into NaN."""
    from ponder.engine.runner import LlamaRunner

    runner = LlamaRunner(random_model("llama"))
    pool = runner.new_pool()
    assert pool.lazy
    pool.allocate(4, 32)
    with torch.inference_mode():
        for t in pool.k + pool.v:
            t.fill_(float("nan"))  # what uninitialised memory may hold
    runner.forward(pool, [0, 1], [[5, 6, 7], [8, 9]], [0, 0])
    runner.step_args = None
    logits = runner.forward(pool, [0, 1], [[3], [4]], [3, 2])
    assert torch.isfinite(logits).all()
