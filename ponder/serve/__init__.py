"""ponder's OpenAI-compatible reasoning server (`ponder serve`, docs/serve.md), in vLLM's three layers.

protocol_common.py     shared wire models, ponder's extra options, the request -> sampling plan, errors
protocol_chat.py       Chat Completions request / response / chunk models
protocol_responses.py  Responses API request / response / output items
protocol_feedback.py   feedback request / response models
sampler.py             samples drawn through the engine client: concurrent streams, 429, abort, auto effort
ranking.py             choosing among samples: vote, task verifier, learned rankers (pluggable)
summary.py             the extractive reasoning summary
outputs.py             a sample as both endpoints send it: answer, thinking, summary, function calls
serving_common.py      the server's state, a prepared request, its run (draw, rank, stream, save)
serving_chat.py        /v1/chat/completions, whole and streamed
serving_responses.py   /v1/responses, whole and streamed (its event sequence)
feedback.py            the SQLite store of returned completions and feedback
app.py                 FastAPI routes, error handlers, the API-key and size gate, the web page (web/)
background.py          the same app served from a thread of this process
"""
