"""The `search` tool: BM25 over a local document collection, the top-k documents' titles and text.

Local on purpose: a model trained with RL calls the tool thousands of times, so it must be fast,
free and the same every time; and a collection of made-up facts (the shipped one, see
`ponder.tools.collection`) makes the value of searching measurable, since no model knows those
facts without it. Point `corpus` at your own documents to search them instead:

- a `.jsonl` file, one {"id", "title", "text"} object a line (only "text" is required);
- a directory of `.txt` / `.md` files, searched recursively; a file is one document, titled by
  its first Markdown heading or else its file name.

Ranking is `bm25s` (Lucene's BM25 variant, English stop words removed, no stemming). An index is
built once per corpus file (and rebuilt when the file changes); a few hundred documents take
milliseconds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from ponder.errors import PonderError
from ponder.io import jsonl_objects
from ponder.tools.base import Observation, Tool, ToolInputError, error

MAX_QUERY_CHARS = 500


class CorpusError(PonderError):
    """The configured corpus is missing, empty or unreadable."""


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str


def _heading(text: str, fallback: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    title = first.lstrip("#").strip() if first.startswith("#") else ""
    return title or fallback


def _read_jsonl(path: Path) -> list[Document]:
    docs = []
    for number, row in jsonl_objects(path, CorpusError, "; each line must be one object"):
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise CorpusError(f'{path}:{number} needs a "text" string (and optionally "id", "title")')
        docs.append(Document(str(row.get("id", number)), str(row.get("title", "")), row["text"]))
    return docs


def _read_folder(path: Path) -> list[Document]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".txt", ".md"))
    docs = []
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        docs.append(Document(str(file.relative_to(path)), _heading(text, file.stem), text))
    return docs


def read_corpus(corpus: str | Path) -> list[Document]:
    """The documents of a corpus path. Raises CorpusError with what to fix."""
    path = Path(corpus).expanduser()
    hint = "set corpus to a .jsonl file of {id, title, text} lines or a folder of .txt/.md files"
    if not path.exists():
        raise CorpusError(f"search corpus {str(path)!r} does not exist; {hint}")
    if path.is_dir():
        docs = _read_folder(path)
    elif path.suffix.lower() == ".jsonl":
        docs = _read_jsonl(path)
    else:
        raise CorpusError(f"search corpus {str(path)!r} is neither a .jsonl file nor a folder; {hint}")
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise CorpusError(f"search corpus {str(path)!r} has no documents with text; {hint}")
    return docs


class Index:
    """A BM25 index over documents; `search` gives (document, score) pairs, best first."""

    def __init__(self, docs: list[Document]):
        import bm25s  # imported here: numpy and bm25s load only when a search happens
        from bm25s.tokenization import Tokenizer

        self.docs = docs
        self.tokenizer = Tokenizer(stopwords="en")
        texts = [f"{d.title}\n{d.text}" for d in docs]
        ids = self.tokenizer.tokenize(texts, update_vocab=True, return_as="ids", show_progress=False)
        self.bm25 = bm25s.BM25()
        self.bm25.index(ids, show_progress=False)

    def search(self, query: str, k: int) -> list[tuple[Document, float]]:
        ids = self.tokenizer.tokenize([query], update_vocab=False, return_as="ids", show_progress=False)
        found, scores = self.bm25.retrieve(ids, k=min(k, len(self.docs)), show_progress=False)
        return [(self.docs[int(i)], float(s)) for i, s in zip(found[0], scores[0], strict=True) if s > 0]


@functools.lru_cache(maxsize=4)
def _index(path: str, stamp: tuple[int, int]) -> Index:
    return Index(read_corpus(path))


def index_for(corpus: str = "") -> Index:
    """The index of a corpus path ('' = the shipped collection), built once per version of the file."""
    from ponder.tools.collection import SHIPPED

    path = Path(corpus or SHIPPED).expanduser().resolve()
    if not path.exists():
        read_corpus(path)  # raises the explanatory error
    stat = path.stat()
    return _index(str(path), (stat.st_mtime_ns, stat.st_size))


def format_results(results: list[tuple[Document, float]]) -> str:
    return "\n".join(f"[{n}] {doc.title}\n{doc.text.strip()}" for n, (doc, _) in enumerate(results, 1))


class SearchTool(Tool):
    name = "search"
    description = (
        "Search a local document collection by keywords and return the best matching documents "
        "(title and text). Use names and distinctive words from the question."
    )
    parameters = {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "keywords, e.g. Vellmarsh founded"}},
        "required": ["query"],
    }
    primary = "query"

    def call(self, arguments: dict) -> Observation:
        query = arguments["query"].strip()
        if not query:
            raise ToolInputError("the query is empty; search for names or distinctive words")
        if len(query) > MAX_QUERY_CHARS:
            raise ToolInputError(f"the query is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
        try:
            index = index_for(self.config.corpus)
        except CorpusError as e:
            return error(str(e), tool=self.name)
        results = index.search(query, max(1, self.config.top_k))
        if not results:
            return Observation(f"No documents match {query!r}.", metadata={"ids": []})
        return Observation(format_results(results), metadata={"ids": [d.id for d, _ in results]})
