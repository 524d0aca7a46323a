"""Tiny random checkpoints of real architectures and chat templates, built by the tests themselves
(no model hub): Qwen3 (its own template, <think> and </think> single tokens, the thinking switch),
Llama 3 (its header template; no thinking tokens, so "</think>" is plain text of several tokens) and
GPT-2 (outside the Llama family, a ChatML-style template). Each is saved as a Hugging Face directory
that `ponder.model.load` (and `AutoModelForCausalLM.from_pretrained`) opens.

The templates are copied from the models' own tokenizer_config.json (Qwen3: Apache-2.0) into
tests/fixtures/, since a user's clone has no ../shared.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from ponder import model as ponder_models
from ponder.corpus import examples
from ponder.tasks.mix import TaskMix

FIXTURES = Path(__file__).parent / "fixtures"
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

KINDS = {
    # kind: (special tokens, added non-special tokens, eos, pad, bos, template)
    "qwen3": (
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"],
        "<|im_end|>",
        "<|endoftext|>",
        None,
        (FIXTURES / "qwen3_chat_template.jinja").read_text(),
    ),
    "llama3": (
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        [],
        "<|eot_id|>",
        "<|end_of_text|>",
        "<|begin_of_text|>",
        (FIXTURES / "llama3_chat_template.jinja").read_text(),
    ),
    "gpt2": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], [], "<|im_end|>", "<|endoftext|>", None, CHATML),
}


def tokenizer(kind: str, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE learned on ponder's corpus, carrying the model family's tokens and template."""
    special, added, eos, pad, bos, template = KINDS[kind]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = [e.prompt + e.completion for e in examples(TaskMix(), 0, 500, mistake_rate=0.1)]
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=eos, pad_token=pad, bos_token=bos, clean_up_tokenization_spaces=False
    )
    if added:
        hf.add_tokens(added)  # single tokens, not special: decoding keeps them (as Qwen3 does)
    hf.chat_template = template
    return hf


def model(kind: str, tok: PreTrainedTokenizerFast, seed: int = 0):
    torch.manual_seed(seed)
    ids = dict(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
    if kind == "gpt2":
        config = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=len(tok), n_positions=512, **ids)
        return GPT2LMHeadModel(config).eval()
    model_type = "qwen3" if kind == "qwen3" else "llama"
    config = AutoConfig.for_model(
        model_type, vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
        tie_word_embeddings=True, **ids,
    )  # fmt: skip
    return AutoModelForCausalLM.from_config(config).eval()


def build(kind: str, directory: Path) -> Path:
    """A saved tiny checkpoint of `kind` (qwen3, llama3, gpt2)."""
    tok = tokenizer(kind)
    return ponder_models.save(model(kind, tok), tok, directory)
