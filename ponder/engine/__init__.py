"""ponder's sampling engine.

chat_format.py  messages -> prompt ids with the model's own template; completion -> thinking / answer / tools
sequence.py     one request's decode state (thinking phase, budgets, stop, pause) and its Rollout
sampling.py     sampling parameters and the per-row seeded token choice
runner.py       the lean Llama-family forward over a pool of KV slots; hf_runner.py: any other causal LM
budget.py       the KV cache sized to the device: on a GPU, the rows that fit in its free memory
live.py         the one decode loop: requests join, leave, pause for tools and abort between steps
engine.py       Engine: model + format + backend; `generate` = add the requests, step until done
client.py       AsyncEngineClient: a background thread steps the loop; async token deltas, abort
vllm_backend.py optional: the client's and `generate`'s interfaces on vLLM (pip install 'ponder[vllm]', a GPU)
"""

from ponder.engine.chat_format import ChatFormat, ParsedCompletion, Phase, ToolCall
from ponder.engine.engine import Engine
from ponder.engine.live import Event, LiveBatch
from ponder.engine.sampling import SamplingParams
from ponder.engine.sequence import Rollout, Sequence

__all__ = [
    "ChatFormat",
    "Engine",
    "Event",
    "LiveBatch",
    "ParsedCompletion",
    "Phase",
    "Rollout",
    "SamplingParams",
    "Sequence",
    "ToolCall",
]
