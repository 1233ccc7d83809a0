"""OpenVINO runtime for BERT-family sentence encoders on the CPU: bf16, f32 and static int8.

Why: on a CPU with AMX (Xeon, 2 cores) the same MiniLM runs 3.55x faster through OpenVINO bf16
than sentence-transformers' fp32 `encode`, with the same retrieval quality (docs/design.md,
`python bench/bench_embed.py`). What makes it fast, each measured:
- OpenVINO's CPU plugin runs the matrix products in bf16 on AMX (`INFERENCE_PRECISION_HINT`); on a
  CPU without bf16 it computes in f32 (`runtime.choose_plan` then asks for f32 outright);
- texts are sorted by their number of word pieces (tokenised once per call), so a batch holds
  texts of one length and carries almost no padding (batches in corpus order were ~2x slower;
  the local engine also hands texts over sorted by length, so a call's texts are alike);
- batches of 16 go to an asynchronous queue with one stream per core (the THROUGHPUT hint), so the
  cores do not wait on each other inside one small batch, and a core slowed by another job takes
  fewer batches instead of holding the others back. Threads are not pinned (`runtime.pin_threads`).

int8 is NNCF's post-training static quantisation (`ModelType.TRANSFORMER`: SmoothQuant, and the
operations known to hurt transformers stay in float), calibrated on a sample of the collection's
own texts. It was not faster than bf16 on an AMX CPU, nor than f32 on an AVX2 CPU without VNNI
(its int8 products ran at f32's speed there); it is `auto`'s choice where VNNI exists without bf16.

The model is converted with `openvino.convert_model` straight from PyTorch (not `optimum`, which
would downgrade transformers) and cached as OpenVINO IR under ~/.cache/embedscope/openvino/
(or $EMBEDSCOPE_CACHE), written atomically, so each machine converts once (~10 s) and each
calibration sample is quantised once (~1-2 min on 2 cores).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embedscope.encoders.runtime import (
    TOKEN_INPUTS,
    TextTokenizer,
    cpu_threads,
    last_hidden,
    model_cache_dir,
    pin_threads,
    pool,
    tokenize,
    torch_version,
)
from embedscope.jsontypes import JSONObject

if TYPE_CHECKING:
    import openvino as ov
    from sentence_transformers import SentenceTransformer

_XML = "model.xml"
#: texts per inference request: faster than 8 or 32 on 2 cores with two streams (exploratory runs)
REQUEST_BATCH = 16
#: calibration texts for int8 (NNCF's default subset size)
CALIBRATION_SIZE = 300
_COMPILED: dict[tuple[str, str, int, bool], ov.CompiledModel] = {}


def fp32_path(model_path: str) -> Path:
    """Where the converted (fp32) model of a local model folder is cached."""
    import openvino

    folder = model_cache_dir(
        "openvino", str(Path(model_path).resolve()), torch_version(), openvino.__version__
    )
    return folder / "fp32" / _XML


def int8_path(model_path: str, calibration: Sequence[str], max_seq_length: int) -> Path:
    """Where the int8 model calibrated on exactly these texts is cached."""
    digest = hashlib.sha1(f"{max_seq_length}\n".encode())
    for text in calibration:
        digest.update(text.encode())
        digest.update(b"\0")
    return fp32_path(model_path).parent.parent / f"int8-{digest.hexdigest()[:16]}" / _XML


def _note(message: str) -> None:
    """First builds take seconds to minutes: say so on stderr (stdout may carry --json output)."""
    print(f"embedscope: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _atomic_dir(target_xml: Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it becomes target_xml's folder in one rename, so a
    reader never sees half a model. If another process finished first, its copy is kept."""
    final = target_xml.parent
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-"))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / _XML).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def convert(st_fp32: SentenceTransformer, target: Path) -> Path:
    """Convert a sentence-transformer's underlying transformer (last hidden state) to OpenVINO IR."""
    import openvino as ov
    import torch

    started = time.perf_counter()
    _note("converting the transformer to OpenVINO IR (once per machine) ...")
    example = _example(st_fp32)
    # tracing warns about constants in the attention-mask code; shapes stay dynamic regardless
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ov.convert_model(
            last_hidden(st_fp32),
            example_input={name: example[name] for name in TOKEN_INPUTS if name in example},
        )
    with _atomic_dir(target) as tmp:
        ov.save_model(model, str(tmp / _XML), compress_to_fp16=False)
    _note(f"converted in {time.perf_counter() - started:.0f} s; cached in {target.parent}")
    return target


def _example(st: SentenceTransformer) -> JSONObject:
    return dict(st.tokenizer(["an example text"], return_tensors="pt"))


def calibration_sample(texts: Sequence[str], size: int = CALIBRATION_SIZE, seed: int = 0) -> list[str]:
    """A fixed-seed random sample of the corpus (all of it when it is small), in corpus order."""
    texts = [t for t in texts if t.strip()]
    if len(texts) <= size:
        return texts
    rows = np.sort(np.random.default_rng(seed).choice(len(texts), size, replace=False))
    return [texts[r] for r in rows]


def quantize_int8(
    fp32_xml: Path, tokenizer: TextTokenizer, calibration: Sequence[str], max_seq_length: int, target: Path
) -> Path:
    """NNCF post-training static int8 quantisation calibrated on `calibration` (see module doc)."""
    import nncf
    import openvino as ov

    started = time.perf_counter()
    _note(f"quantising to int8, calibrated on {len(calibration)} of the collection's texts (once) ...")
    model = ov.Core().read_model(str(fp32_xml))
    dataset = nncf.Dataset(list(calibration), lambda text: tokenize(tokenizer, [text], max_seq_length))
    # NNCF draws calibration progress bars with rich on sys.stdout (which may be carrying --json) and
    # logs INFO lines through a handler bound to stdout: the bars are dropped (the note above and the
    # one below say what runs), its log goes to stderr from WARNING up, so real warnings still show
    nncf_log = logging.getLogger("nncf")
    handlers = [(h, h.stream) for h in nncf_log.handlers if isinstance(h, logging.StreamHandler)]
    level = nncf_log.level
    try:
        nncf_log.setLevel(logging.WARNING)
        for h, _ in handlers:
            h.setStream(sys.stderr)
        with contextlib.redirect_stdout(io.StringIO()):
            quantized = nncf.quantize(
                model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration)
            )
    finally:
        nncf_log.setLevel(level)
        for h, stream in handlers:
            h.setStream(stream)
    with _atomic_dir(target) as tmp:
        ov.save_model(quantized, str(tmp / _XML))
    _note(f"int8 model built in {time.perf_counter() - started:.0f} s; cached in {target.parent}")
    return target


def kept_copy(xml: Path) -> Path:
    """The IR model at `xml` copied into the machine cache (keyed by its content, so once per
    model): an encoder loaded from a folder that is deleted after loading (a version packed in
    PostgreSQL, a Ray actor's arguments) keeps a model that stays."""
    digest = hashlib.sha1(xml.read_bytes())
    digest.update(xml.with_suffix(".bin").read_bytes())
    target = model_cache_dir("openvino") / "loaded" / digest.hexdigest()[:16] / _XML
    if not target.exists():
        with _atomic_dir(target) as tmp:
            copy_model(xml, tmp)
    return target


def copy_model(xml: Path, directory: Path) -> None:
    """Copy an IR model (model.xml + model.bin) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for part in (xml, xml.with_suffix(".bin")):
        shutil.copyfile(part, directory / part.name)


def compiled_model(xml: Path, precision_hint: str = "bf16") -> ov.CompiledModel:
    """Compile once per process; the THROUGHPUT hint gives one stream per core on a small CPU."""
    threads = cpu_threads()  # 0: OpenVINO's default, one per physical core
    pin = pin_threads()
    key = (str(xml), precision_hint, threads, pin)
    if key not in _COMPILED:
        import openvino as ov

        _COMPILED[key] = ov.Core().compile_model(
            str(xml),
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": precision_hint,
                "PERFORMANCE_HINT": "THROUGHPUT",
                "INFERENCE_NUM_THREADS": threads,
                "ENABLE_CPU_PINNING": pin,
            },
        )
    return _COMPILED[key]


def describe(compiled: ov.CompiledModel) -> JSONObject:
    """What a compiled model runs with, as OpenVINO reports it (not as it was asked): the
    arithmetic, streams, threads, pinning and performance hint."""
    names = {
        "inference_precision": "INFERENCE_PRECISION_HINT",
        "streams": "NUM_STREAMS",
        "threads": "INFERENCE_NUM_THREADS",
        "pinned": "ENABLE_CPU_PINNING",
        "hint": "PERFORMANCE_HINT",
    }
    out: JSONObject = {}
    for key, name in names.items():
        try:
            value = compiled.get_property(name)
        except RuntimeError:  # a property this OpenVINO does not report
            continue
        if hasattr(value, "get_type_name"):  # an element type: "f32", "bf16"
            value = value.get_type_name()
        out[key] = value if isinstance(value, bool | int | float) else str(value)
    out["request_batch"] = REQUEST_BATCH
    return out


def encode(
    compiled: ov.CompiledModel,
    tokenizer: TextTokenizer,
    texts: Sequence[str],
    *,
    max_seq_length: int,
    pooling: str = "mean",
    batch_size: int = REQUEST_BATCH,
) -> np.ndarray:
    """Pooled (not normalised) float32 vectors, in the order of `texts`."""
    import openvino as ov

    texts = list(texts)
    out = np.zeros((len(texts), compiled.output(0).get_partial_shape()[2].get_length()), dtype=np.float32)
    if not texts:
        return out
    size = max(1, min(batch_size, REQUEST_BATCH))
    if len(texts) <= size:  # one request: no queue (a single query's latency path)
        feed = tokenize(tokenizer, texts, max_seq_length)
        request = compiled.create_infer_request()
        out[:] = pool(request.infer(feed)[0], feed["attention_mask"], pooling)
        return out
    # tokenised once (~2% of the model's time), then longest first by word pieces, not characters:
    # each batch is cut to its own longest text, so it carries almost no padding (all books in
    # chunks of 256: 1.4% more tokens than the texts hold, against 12% for batches sorted by
    # characters and 15% for sentence-transformers' batches of 32; bench/bench_embed.py --padding)
    whole = tokenize(tokenizer, texts, max_seq_length)
    lengths = whole["attention_mask"].sum(axis=1)
    order = np.argsort(-lengths, kind="stable")

    def done(request: ov.InferRequest, rows: np.ndarray) -> None:
        mask = request.get_tensor("attention_mask").data
        out[rows] = pool(request.get_output_tensor(0).data, mask, pooling)

    queue = ov.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    queue.set_callback(done)
    for start in range(0, len(texts), size):
        rows = order[start : start + size]
        width = int(lengths[rows].max())
        queue.start_async({name: np.ascontiguousarray(a[rows, :width]) for name, a in whole.items()}, rows)
    queue.wait_all()
    return out
