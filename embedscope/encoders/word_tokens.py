"""Token counts of texts through a word-level cache of a BERT WordPiece tokenizer: the static
encoder's fast path, equal to tokenising every text in full.

Why: a static model's encode is a table lookup, so the tokenizer is all of its time (3,700
books/s on one core, docs/design.md); the tokenizer's own parallelism is off process-wide
(TOKENIZERS_PARALLELISM=false, so forked workers cannot deadlock), and Python threads do not help
(the GIL is held). No library caches the work either: model2vec 0.10 (the latest) calls
`Tokenizer.encode_batch_fast` on every text, and `tokenizers` has no per-word cache for WordPiece.
A collection repeats its words: 5,197 books are 514,000 words but only 37,000 distinct ones.

What makes a cache exact: a BERT tokenizer normalises, pre-tokenises into words on whitespace and
punctuation (BertPreTokenizer), then runs WordPiece on each word alone. So a text's tokens are its
words' tokens in order, and its token counts are the sum of its words'. Here:

- printable-ASCII text is split into those words by one regex (BertPreTokenizer's rule on ASCII:
  runs of letters and digits; every ASCII punctuation mark alone), at C speed;
- any other stretch between ASCII whitespace (accents, curly quotes, CJK, control characters)
  becomes one cache key that the real tokenizer normalises and splits itself: normalisation and
  pre-tokenisation are per character and never join across a space, tab or newline;
- each distinct key is tokenised once by the real tokenizer (or found whole in the vocabulary,
  which is what WordPiece returns for a word it holds) and its token ids kept;
- truncation to the first `max_tokens` tokens (the tokenizer's, one sequence cut at the right end)
  is applied key by key to the few texts that are longer;
- a text holding an added token's text ("[SEP]", "[MASK]": the tokenizer matches those before
  normalising) is left to the caller, to tokenise in full.

The text x vocabulary count matrix is then a sparse product (texts x distinct keys) @ (keys x
vocabulary), built with pandas' hash factorisation and SciPy. `tests/test_encoders_static.py`
checks the result against the tokenizer on every books and SciFact text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from itertools import chain, islice
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embedscope.jsontypes import JSONObject

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# texts made only of these take the regex alone: printable ASCII and the whitespace BERT keeps
_PLAIN = re.compile(r"[\x20-\x7e\t\n\r]*")
# BertPreTokenizer on printable ASCII: a run of letters and digits, or one punctuation mark
_WORD = re.compile(r"[A-Za-z0-9]+|[!-/:-@\[-`{-~]")
# a chunk between the whitespace BERT always splits on (space, tab, newline) that holds anything
# else than printable ASCII; the lookbehind makes it start at a chunk's first character only
_OTHER = re.compile(r"(?<![^ \t\n\r])[^ \t\n\r]*[^\x20-\x7e \t\n\r][^ \t\n\r]*")
# keys a joined tokenizer call takes at once: bounds the one string it builds
_RESOLVE_CHUNK = 8192


def bert_wordpiece(tokenizer: Tokenizer, spec: JSONObject | None = None) -> bool:
    """Whether `tokenizer` (a `tokenizers.Tokenizer`) is built the way this cache assumes:
    BertNormalizer + BertPreTokenizer + WordPiece, with only special added tokens. `spec`: its
    JSON already parsed by the caller (~10 ms for MiniLM's), else it is parsed here."""
    spec = spec if spec is not None else json.loads(tokenizer.to_str())
    return (
        (spec.get("normalizer") or {}).get("type") == "BertNormalizer"
        and (spec.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
        and (spec.get("model") or {}).get("type") == "WordPiece"
        and all(token.get("special") for token in spec.get("added_tokens") or [])
    )


class WordPieceCounter:
    """Per-text token counts of a BERT WordPiece tokenizer, cached per distinct word."""

    def __init__(self, tokenizer: Tokenizer, max_cached_words: int = 500_000) -> None:
        from tokenizers import Tokenizer

        text = tokenizer.to_str()
        spec = json.loads(text)
        if not bert_wordpiece(tokenizer, spec):
            raise ValueError(
                "WordPieceCounter needs a BertNormalizer + BertPreTokenizer + WordPiece tokenizer"
            )
        # a private copy: keys are tokenised joined, so no truncation, no padding
        self._tokenizer = Tokenizer.from_str(text)
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.vocabulary_size = int(tokenizer.get_vocab_size())
        self._vocab: dict[str, int] = tokenizer.get_vocab()
        self._lowercase = bool(spec["normalizer"].get("lowercase", True))
        self._max_word_chars = int(spec["model"].get("max_input_chars_per_word", 100))
        added = [token["content"] for token in spec.get("added_tokens") or []]
        # case-insensitive: it only sends more texts to the tokenizer, never fewer
        self._added = re.compile("|".join(map(re.escape, added)), re.IGNORECASE) if added else None
        self._ids: dict[str, tuple[int, ...]] = {}
        self._max_cached_words = max_cached_words

    def keys(self, text: str) -> list[str]:
        """The cache keys of a text in order: its words, or whole non-ASCII chunks."""
        if _PLAIN.fullmatch(text):
            return _WORD.findall(text)
        keys: list[str] = []
        end = 0
        for other in _OTHER.finditer(text):
            keys += _WORD.findall(text, end, other.start())
            keys.append(other.group())
            end = other.end()
        keys += _WORD.findall(text, end)
        return keys

    def counts(self, texts: Sequence[str], max_tokens: int | None = None) -> tuple[sp.csr_matrix, np.ndarray]:
        """A (texts x vocabulary) float32 matrix of the token counts of each text's first
        `max_tokens` tokens (all with None), as the tokenizer truncates, and the indices of the
        texts the caller must tokenise itself (they hold an added token's text; their rows are zero)."""
        keys: list[list[str]] = []
        special: list[int] = []
        for i, text in enumerate(texts):
            if self._added is not None and self._added.search(text):
                special.append(i)
                keys.append([])
            else:
                keys.append(self.keys(text))
        lengths = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
        flat = np.fromiter(chain.from_iterable(keys), dtype=object, count=int(lengths.sum()))
        codes, distinct = pd.factorize(flat)  # hashed in C: each distinct key once below
        key_ids = self._token_ids(list(distinct))
        starts = np.concatenate([[0], np.cumsum(lengths)])
        occurrences = sp.csr_matrix(
            (np.ones(len(codes), dtype=np.float32), codes, starts), shape=(len(keys), len(distinct))
        )
        counts = occurrences @ self._rows(key_ids)
        if max_tokens is not None:
            key_lengths = np.fromiter(map(len, key_ids), dtype=np.float32, count=len(key_ids))
            too_long = np.flatnonzero(occurrences @ key_lengths > max_tokens)
            if len(too_long):
                row_keys = [codes[starts[i] : starts[i + 1]] for i in too_long]
                counts = self._truncate(counts, too_long, row_keys, key_ids, max_tokens)
        return counts.tocsr(), np.asarray(special, dtype=np.int64)

    def _truncate(
        self,
        counts: sp.csr_matrix,
        rows: np.ndarray,
        row_keys: list[np.ndarray],
        key_ids: list[tuple[int, ...]],
        max_tokens: int,
    ) -> sp.csr_matrix:
        """`counts` with `rows` replaced by the counts of their first `max_tokens` tokens (the
        tokenizer's truncation of one sequence: the right end, no stride), key by key: few texts."""
        first = [list(islice(chain.from_iterable(key_ids[k] for k in keys), max_tokens)) for keys in row_keys]
        kept = np.ones(counts.shape[0], dtype=np.float32)
        kept[rows] = 0
        placed = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, np.arange(len(rows)))),
            shape=(counts.shape[0], len(rows)),
        )
        return sp.diags(kept) @ counts + placed @ self._rows(first)

    def _rows(self, ids: Sequence[Sequence[int]]) -> sp.csr_matrix:
        """A (len(ids) x vocabulary) matrix of token counts, one row per id list."""
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        columns = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        return sp.csr_matrix(
            (np.ones(len(columns), dtype=np.float32), columns, np.concatenate([[0], np.cumsum(lengths)])),
            shape=(len(ids), self.vocabulary_size),
        )

    def _token_ids(self, keys: list[str]) -> list[tuple[int, ...]]:
        """The token ids of each key, tokenising the keys not cached yet."""
        if len(self._ids) + len(keys) > self._max_cached_words:
            self._ids.clear()  # bounded memory: a new vocabulary of words costs one re-tokenisation
        ids = list(map(self._ids.get, keys))
        missing = [key for key, found in zip(keys, ids, strict=True) if found is None]
        if not missing:
            return ids  # type: ignore[return-value]
        new = self._tokenise(missing)
        self._ids.update(new)
        # from `new`, not the cache: another thread may clear the cache meanwhile (the server)
        return [new[key] if found is None else found for key, found in zip(keys, ids, strict=True)]

    def _tokenise(self, keys: list[str]) -> dict[str, tuple[int, ...]]:
        """Token ids of keys: a word the vocabulary holds whole is that one token (WordPiece's
        longest match); the rest are tokenised by the real tokenizer, many keys per call."""
        ids: dict[str, tuple[int, ...]] = {}
        rest = []
        for key in keys:
            word = key.lower() if self._lowercase else key
            # only printable ASCII: the normaliser may change anything else (accents, case)
            token = self._vocab.get(word) if key.isascii() and key.isprintable() else None
            if token is not None and len(word) <= self._max_word_chars:
                ids[key] = (token,)
            else:
                rest.append(key)
        for start in range(0, len(rest), _RESOLVE_CHUNK):
            chunk = rest[start : start + _RESOLVE_CHUNK]
            # one call for many keys: joined by spaces (never inside a token); each token's
            # character offset says which key it came from
            encoding = self._tokenizer.encode(" ".join(chunk), add_special_tokens=False)
            starts = np.cumsum([0] + [len(key) + 1 for key in chunk[:-1]])
            owner = np.searchsorted(starts, [begin for begin, _ in encoding.offsets], side="right") - 1
            per_key: list[list[int]] = [[] for _ in chunk]
            for key_index, token in zip(owner.tolist(), encoding.ids, strict=True):
                per_key[key_index].append(token)
            ids.update(zip(chunk, map(tuple, per_key), strict=True))
        return ids
