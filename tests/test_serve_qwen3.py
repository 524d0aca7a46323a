"""The Chat Completions and Responses routes on a tiny Qwen3: its own chat template (thinking switch,
tools, special tokens), so `usage.prompt_tokens` is checked against a template that is not ponder's.
The model is random (its answers are noise); what is tested is the token accounting and the wire.
The template is Qwen3's own (Apache-2.0), copied from its tokenizer_config.json: tests build the
tokenizer themselves, since a user's clone has no copy of the real one."""

from __future__ import annotations

import openai
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from ponder.engine import Engine
from ponder.engine.chat_format import Phase
from ponder.engine.client import AsyncEngineClient
from ponder.serve.background import BackgroundServer
from ponder.serve.serving_common import ServerState

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
QWEN3_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in message.content %}
                {%- set content = message.content.split('</think>')[-1].lstrip('\n') %}
                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"""  # noqa: E501
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Compute 1+1."},
    {"role": "assistant", "content": "2", "reasoning_content": "1+1=2"},
    {"role": "user", "content": "Compute 27+56."},
]
TOOL = {
    "type": "function",
    "function": {"name": "calculator", "description": "exact arithmetic", "parameters": {"type": "object"}},
}


CORPUS = [f"Compute {a}+{b}. {a % 10}+{b % 10}={a % 10 + b % 10}, so {a + b}. You are terse." for a in range(40)
          for b in range(0, 90, 7)]  # fmt: skip


def qwen3_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE learned on arithmetic text, carrying Qwen3's special tokens and template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", clean_up_tokenization_spaces=False
    )
    hf.add_tokens(ADDED)  # single tokens, not special: decoding keeps them, as Qwen3's do
    hf.chat_template = QWEN3_TEMPLATE
    return hf


@pytest.fixture(scope="module")
def engine():
    tok = qwen3_tokenizer()
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "qwen3", vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
        tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    return Engine(AutoModelForCausalLM.from_config(config).eval(), tok)


@pytest.fixture(scope="module")
def client(engine):
    state = ServerState(AsyncEngineClient(engine), "tiny-qwen3", engine.model.config.max_position_embeddings)
    with BackgroundServer(state) as server:
        yield openai.OpenAI(base_url=server.base_url, api_key="-", max_retries=0, timeout=60)


def test_the_tokenizer_is_qwen3s(engine):
    fmt = engine.format
    assert fmt.native_thinking and fmt.takes_thinking_switch
    prompt = fmt.render(MESSAGES)
    assert engine.tokenizer.decode(prompt).endswith("<|im_start|>assistant\n")
    assert fmt.start_phase(prompt) == Phase.BEFORE


def test_prompt_tokens_are_the_length_of_qwen3s_own_template(client, engine):
    reply = client.chat.completions.create(model="tiny-qwen3", messages=MESSAGES, max_completion_tokens=8)
    assert reply.usage.prompt_tokens == len(engine.format.render(MESSAGES))
    with_tools = client.chat.completions.create(
        model="tiny-qwen3", messages=MESSAGES, tools=[TOOL], max_completion_tokens=8
    )
    assert with_tools.usage.prompt_tokens == len(engine.format.render(MESSAGES, tools=[TOOL]))
    response = client.responses.create(model="tiny-qwen3", input=MESSAGES[1]["content"], max_output_tokens=8)
    assert response.usage.input_tokens == len(engine.format.render([MESSAGES[1]]))


def test_thinking_off_uses_the_templates_own_switch(client, engine):
    reply = client.chat.completions.create(model="tiny-qwen3", messages=MESSAGES, reasoning_effort="none")
    off = engine.format.render(MESSAGES, thinking=False)
    assert engine.tokenizer.decode(off).endswith("<think>\n\n</think>\n\n")
    assert reply.usage.prompt_tokens == len(off) != len(engine.format.render(MESSAGES))
    assert reply.usage.completion_tokens_details.reasoning_tokens == 0


def test_thinking_on_streams_and_matches_the_plain_answer(client):
    ask = dict(model="tiny-qwen3", messages=MESSAGES, reasoning_effort="medium", max_completion_tokens=40)
    plain = client.chat.completions.create(**ask, extra_body={"ponder": {"show_thinking": True}})
    chunks = list(client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.model_dump() == plain.usage.model_dump()
    assert plain.usage.completion_tokens_details.reasoning_tokens > 0, "thinking on: the model must think"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == (plain.choices[0].message.content or "")
