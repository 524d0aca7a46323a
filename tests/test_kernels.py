"""The decode loop's CPU fast paths: ponder's decode-attention kernel (ponder/engine/csrc) gives the
attention of softmax over torch's matmuls (views of a KV pool, grouped heads, masked keys) and can be
switched off; a linear layer with oneDNN-packed weights gives what F.linear gives."""

from __future__ import annotations

import pytest
import torch

from ponder.engine.kernels import decode_attention_kernel


def reference(q, k, v, mask, scale):
    scores = (q @ k.transpose(-1, -2)) * scale + mask[:, None, None, :]
    return scores.softmax(-1) @ v


@pytest.fixture(scope="module")
def kernel():
    attend = decode_attention_kernel()
    if attend is None:
        pytest.skip("the kernel could not be built here (no C++ compiler or ninja); the engine uses matmuls")
    return attend


@pytest.mark.parametrize(("rows", "kv_heads", "group", "length"), [(1, 4, 1, 7), (5, 2, 3, 70), (16, 4, 1, 200)])
def test_the_kernel_equals_softmax_over_matmuls(kernel, rows, kv_heads, group, length):
    torch.manual_seed(rows + length)
    capacity, dim = length + 9, 32
    k_pool, v_pool = torch.randn(2, rows, kv_heads, capacity, dim).unbind(0)  # views with a row stride
    k, v = k_pool[:, :, :length], v_pool[:, :, :length]
    q = torch.randn(rows, kv_heads, group, dim) * 3
    bias = torch.zeros(rows, capacity)
    bias[:, length // 2 :: 3] = float("-inf")  # keys a row may not see
    bias[0, 1:] = float("-inf")  # a row that sees one key only
    mask = bias[:, :length]
    out = kernel(q, k, v, mask, 0.2)
    torch.testing.assert_close(out, reference(q, k, v, mask, 0.2), rtol=1e-5, atol=1e-6)


def test_the_engine_decodes_through_the_kernel_on_a_cpu(kernel, trained):
    from ponder.engine import Engine

    assert Engine(*trained).runner.kernel is kernel


def test_the_switch_turns_the_kernel_off(monkeypatch):
    monkeypatch.setenv("PONDER_DECODE_KERNEL", "0")
    assert decode_attention_kernel.__wrapped__() is None


@pytest.mark.parametrize("rows", [1, 11, 12, 64])  # both sides of PACKED_MIN_ROWS
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


def test_a_built_kernel_is_imported_without_torch_s_build_lock(kernel, monkeypatch):
    """Once built, later processes import the library directly: no lock, no ninja run (a process
    killed inside torch's `load` leaves a lock every later `load` waits on forever)."""
    from torch.utils import cpp_extension

    def no_build(*args, **kwargs):
        raise AssertionError("torch's load() ran for a kernel that is already built")

    monkeypatch.setattr(cpp_extension, "load", no_build)
    assert decode_attention_kernel.__wrapped__() is not None


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
