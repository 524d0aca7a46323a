"""Train a small byte-level BPE tokenizer on the corpus and wrap it as a Hugging Face tokenizer.

Digits are split one per token (as Llama and nanochat do): a tiny model learns carries digit by
digit instead of memorising a token for every number. The saved directory (tokenizer.json,
tokenizer_config.json, the chat template) loads with `AutoTokenizer.from_pretrained`.

`<think>` and `</think>` are single tokens but not *special* ones (as in Qwen3): tools that decode
with `skip_special_tokens=True` (TRL hands such text to reward functions) must still see them, or
every answer would parse as empty.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ponder.format import CHAT_TEMPLATE, END, SPECIAL_TOKENS, THINK_CLOSE, THINK_OPEN

THINK_TAGS = (THINK_OPEN, THINK_CLOSE)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A BPE tokenizer learned from `texts`, with ponder's special tokens and chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte is encodable
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return wrap(tok)


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    data = json.loads(tok.to_str())
    for added in data["added_tokens"]:
        if added["content"] in THINK_TAGS:
            added["special"] = False
    tok = Tokenizer.from_str(json.dumps(data))
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=END,
        pad_token="<|pad|>",
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (END, "<|pad|>", *THINK_TAGS)],
        clean_up_tokenization_spaces=False,
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf
