"""The sampling engine: batched generation over a KV cache, for evals, RL, test-time compute and chat.

    engine = Engine(model, tokenizer)
    groups = engine.generate(prompts, SamplingParams(n=8, temperature=1.0, max_tokens=128))
    groups[i][j]  # the j-th of n Rollouts for prompt i: tokens, log-probs, loss mask, text, ...

How one call runs:
  1) prefill: the distinct prompts, left-padded into one batch, run once;
  2) fan-out: each prompt's KV cache is copied to its n samples (the group shares one prefill);
  3) decode: one token per live sequence per step. A token is either sampled (mask 1) or *forced*
     (mask 0: written for the model, e.g. budget forcing's "</think>" or "wait,", later tool output),
     so the RL loss mask comes for free;
  4) finished sequences (end token, stop string, max_tokens) are compacted out of the batch, so the
     long tail of a group does not pay for the rows that already stopped.

The engine reads the model's live parameters (`LlamaRunner.refresh` re-fuses them at every call),
so the RL loop needs no weight copy; pushing weights to another process is `load_weights` there.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ponder.engine.runner import KVCache, LlamaRunner
from ponder.engine.sampling import SamplingParams, choose_tokens
from ponder.errors import PonderError
from ponder.format import THINK_CLOSE, ParsedCompletion, parse_completion

WAIT_TEXT = "\nwait,"  # budget forcing writes this when the model stops thinking too early: the
# words ponder's corpus uses to reopen a step it doubts ("wait, 27+56 is not 84, let me recheck")


@dataclass
class Rollout:
    """One sampled completion, with everything RL and evals need."""

    prompt_index: int
    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # log-prob of each token when it was chosen
    mask: list[int] = field(default_factory=list)  # 1 = the model wrote it, 0 = forced for it
    text: str = ""
    finish_reason: str = ""  # "stop" (end token or stop string) or "length"
    thinking_tokens: int = 0  # tokens before the model's </think>

    @property
    def parsed(self) -> ParsedCompletion:
        return parse_completion(self.text)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


class _Sequence:
    """Decode-time state of one row: its rollout plus forcing bookkeeping."""

    def __init__(self, rollout: Rollout):
        self.rollout = rollout
        self.forced: list[int] = []  # tokens to write for the model before sampling again
        self.thinking = True  # prompts end inside <think>; flips at the model's </think>
        self.done = False


class Engine:
    def __init__(self, model, tokenizer, max_batch: int = 256):
        self.model = model
        self.tokenizer = tokenizer
        self.runner = LlamaRunner(model)
        self.max_batch = max_batch
        self.end_ids = _end_token_ids(model, tokenizer)
        self.close_ids = tokenizer.encode("\n" + THINK_CLOSE, add_special_tokens=False)
        self.close_id = self.close_ids[-1]
        self.wait_ids = tokenizer.encode(WAIT_TEXT, add_special_tokens=False)

    @property
    def device(self):
        return self.runner.device

    @torch.no_grad()
    def load_weights(self, state_dict) -> None:
        """Take new weights, e.g. pushed by a trainer in another process (a `state_dict` sent over
        any transport): copied into the model in place and the fused tensors rebuilt, so the next
        `generate` samples from them. Names and shapes must be the model's own."""
        own = self.model.state_dict()
        unknown = sorted(set(state_dict) - set(own))
        missing = sorted(set(own) - set(state_dict) - _tied_names(self.model))
        wrong = sorted(k for k, v in state_dict.items() if k in own and tuple(v.shape) != tuple(own[k].shape))
        if unknown or missing or wrong:
            raise PonderError(
                "these weights do not fit this model: "
                + "; ".join(f"{what}: {', '.join(names[:4])}" for what, names in
                            (("unknown", unknown), ("missing", missing), ("wrong shape", wrong)) if names)
                + ". Push the state_dict of a model with the same config."
            )  # fmt: skip
        self.model.load_state_dict(state_dict, strict=False)
        self.runner.refresh()

    def generate(
        self,
        prompts: Sequence[str] | Sequence[list[int]],
        params: SamplingParams | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[list[Rollout]]:
        """`params.n` rollouts for each prompt (text already in the chat format, or token ids).

        `progress(k)` is called as k more sequences finish."""
        params = params or SamplingParams()
        self.runner.refresh()
        prompt_ids = [self._encode(p) for p in prompts]
        seed = params.seed if params.seed is not None else random.randrange(2**62)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        per_chunk = max(1, self.max_batch // params.n)
        groups: list[list[Rollout]] = []
        for start in range(0, len(prompt_ids), per_chunk):
            chunk = prompt_ids[start : start + per_chunk]
            groups += self._generate_chunk(chunk, start, params, generator, progress)
        return groups

    def _encode(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        else:
            ids = list(prompt)
        if not ids:
            raise ValueError("an empty prompt cannot be generated from: give at least one token")
        return ids

    # ----------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def _generate_chunk(self, prompt_ids, offset, params, generator, progress) -> list[list[Rollout]]:
        device, n = self.device, params.n
        # 1) prefill the distinct prompts once, left-padded to a common length
        longest = max(len(p) for p in prompt_ids)
        pad_id = self.tokenizer.pad_token_id or 0
        tokens = torch.tensor([[pad_id] * (longest - len(p)) + p for p in prompt_ids], device=device)
        valid = torch.tensor([[False] * (longest - len(p)) + [True] * len(p) for p in prompt_ids], device=device)
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
        cache = self.runner.new_cache(len(prompt_ids), longest + params.max_tokens)
        logits = self.runner.forward(tokens, positions, cache, valid)
        # 2) fan out: every sample of a prompt starts from a copy of the prompt's cache
        next_pos = valid.sum(-1)  # (B,) position of the next token
        if n > 1:
            fan = torch.arange(len(prompt_ids), device=device).repeat_interleave(n)
            cache.select(fan)
            logits, next_pos = logits.index_select(0, fan), next_pos.index_select(0, fan)
        seqs = [_Sequence(Rollout(offset + i, prompt_ids[i])) for i in range(len(prompt_ids)) for _ in range(n)]
        rows = list(range(len(seqs)))  # rows[r] = index into seqs of cache row r
        # 3) decode until every sequence is done or out of tokens
        for step in range(params.max_tokens):
            if params.force_thinking:
                logits = self._forbid_skipping(logits, [seqs[i] for i in rows])
            sampled, logprobs = choose_tokens(logits, params, generator)
            chosen = self._advance([seqs[i] for i in rows], sampled.tolist(), logprobs.tolist(), params, step)
            finished = [r for r, i in enumerate(rows) if seqs[i].done]
            newly = sum(1 for r in finished if seqs[rows[r]].rollout.num_tokens == step + 1)
            if progress and newly:
                progress(newly)
            if len(finished) == len(rows):
                break
            # 4) compact finished rows away once they are a quarter of the batch
            keep = None
            if finished and len(finished) * 4 >= len(rows):
                keep = [r for r, i in enumerate(rows) if not seqs[i].done]
                rows = [rows[r] for r in keep]
                chosen = [chosen[r] for r in keep]
                keep = torch.tensor(keep, device=device)
                cache.select(keep)
                next_pos = next_pos.index_select(0, keep)
            logits = self._step(chosen, next_pos, cache)
            next_pos = next_pos + 1
        for seq in seqs:
            self._finish(seq, params)
        return [[s.rollout for s in seqs[i * n : (i + 1) * n]] for i in range(len(prompt_ids))]

    def _forbid_skipping(
        self, logits: torch.Tensor, seqs: list[_Sequence], only: list[bool] | None = None
    ) -> torch.Tensor:
        """force_thinking: a row that has not written a thinking token yet may not begin the
        end-of-thinking ("\n</think>"): it must pick its best way to start thinking instead.
        `only[r]`: whether row r asked for it (default: every row; the running batch mixes requests)."""
        rows = [
            r
            for r, s in enumerate(seqs)
            if s.thinking and not s.done and s.rollout.thinking_tokens == 0 and (only is None or only[r])
        ]
        if not rows:
            return logits
        logits = logits.clone()
        banned = torch.tensor([self.close_ids[0], self.close_id, *self.end_ids], device=logits.device)
        logits[torch.tensor(rows, device=logits.device)[:, None], banned[None, :]] = float("-inf")
        return logits

    def _step(self, chosen: list[int], positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        tokens = torch.tensor(chosen, device=positions.device)[:, None]
        new_valid = torch.ones_like(tokens, dtype=torch.bool)
        return self.runner.forward(tokens, positions[:, None], cache, new_valid)

    def _advance(self, seqs, sampled, logprobs, params, step) -> list[int]:
        """Append this step's token to every live sequence (sampled or forced); mark the finished."""
        chosen = []
        last_step = step == params.max_tokens - 1
        budgets = params.max_thinking_tokens is not None or params.min_thinking_tokens > 0
        for seq, token, logprob in zip(seqs, sampled, logprobs, strict=True):
            if seq.done:  # kept in the batch until the next compaction; its token is ignored
                chosen.append(token)
                continue
            written = True
            if budgets or seq.forced:
                token, logprob, written = self._force(seq, token, logprob, params)
            self._write(seq, token, logprob, written)
            r = seq.rollout
            if self._stopped(r, params):
                seq.done, r.finish_reason = True, "stop"
            elif last_step:
                seq.done, r.finish_reason = True, "length"
            chosen.append(token)
        return chosen

    def _write(self, seq: _Sequence, token: int, logprob: float, written: bool) -> None:
        """Append one token to a sequence's rollout (mask 1 if the model wrote it, 0 if it was
        written for it) and follow whether the sequence is still thinking."""
        r = seq.rollout
        r.token_ids.append(token)
        r.logprobs.append(logprob)
        r.mask.append(1 if written else 0)
        if seq.thinking:
            if token == self.close_id:
                seq.thinking = False
            else:
                r.thinking_tokens += 1

    def _force(self, seq: _Sequence, token: int, logprob: float, params) -> tuple[int, float, bool]:
        """Budget forcing: replace the sampled token when the thinking budget says so."""
        if not seq.forced and seq.thinking:
            count = seq.rollout.thinking_tokens
            wants_to_close = token == self.close_id or token in self.end_ids
            if wants_to_close and count < params.min_thinking_tokens:
                seq.forced = list(self.wait_ids)
            elif params.max_thinking_tokens is not None and count + len(self.close_ids) - 1 >= (
                params.max_thinking_tokens
            ):  # the forced "\n" before "</think>" is a thinking token too: start it within budget
                seq.forced = list(self.close_ids)
        if seq.forced:
            return seq.forced.pop(0), 0.0, False
        return token, logprob, True

    def _stopped(self, rollout: Rollout, params: SamplingParams) -> bool:
        """The last token ends the sequence: an end token, or it completes a stop string."""
        return rollout.token_ids[-1] in self.end_ids or bool(params.stop and self._hit_stop(rollout, params.stop))

    def _hit_stop(self, rollout: Rollout, stops: list[str]) -> bool:
        tail = self.tokenizer.decode(rollout.token_ids[-16:], skip_special_tokens=False)
        return any(s in tail for s in stops)

    def _finish(self, seq: _Sequence, params: SamplingParams) -> None:
        r = seq.rollout
        if not r.finish_reason:
            r.finish_reason = "length"
        ids = r.token_ids[:-1] if r.token_ids and r.token_ids[-1] in self.end_ids else r.token_ids
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        for stop in params.stop:  # OpenAI semantics: the stop string is not part of the text
            if stop in text:
                text = text[: text.index(stop)]
        r.text = text


def _tied_names(model) -> set[str]:
    """Weights that are another weight under a second name (tied embeddings): not required."""
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return set(tied if not isinstance(tied, dict) else tied.keys())


def _end_token_ids(model, tokenizer) -> set[int]:
    ids = set()
    for source in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(source)
    return ids
