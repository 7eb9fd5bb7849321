"""The bundled sentence-transformers model on ONNX Runtime: exported once, int8, ~2x torch.

    model dir ─► torch.onnx export (eager attention) ─► ORT BERT fusions ─► dynamic int8
              ─► ~/.cache/rag/onnx/<model hash>-<recipe>/model.onnx   (built once, shared)

`OnnxEmbedding` has the surface of `rag.embeddings.SentenceEmbedding` (encode, count_tokens,
max_tokens, dim, fingerprint, tokenizer) and reproduces sentence-transformers' pipeline: the same
word pieces (the model's own tokenizer.json, truncated at max_seq_length), mean pooling over the
attention mask, L2 normalisation. Texts are sorted by length before batching so little padding is
computed.

Quantisation recipe (measured on every chunk of the bundled corpus, see docs/performance.md):
weights int8 per output channel, activations uint8 per batch, on every MatMul except the second
feed-forward layer of each block, whose GELU outputs have outliers that per-tensor int8 cannot
hold (keeping those six in fp32 lifts the mean cosine to fp32 torch from 0.995 to 0.998). The
fused attention stays fp32. The int8 vectors are close to, not equal to, the torch ones, so the
fingerprint differs and a store built with one backend refuses the other until rebuilt;
`quantize="none"` gives fp32 ONNX whose vectors *are* interchangeable with torch.

The export needs torch and transformers (only the first time); afterwards a process loads the
cached file with onnxruntime and tokenizers alone, in well under a second.

    build.py    export, fusion, quantisation, the check against torch, the cache (once)
    session.py  tokenizer, ORT session, padding, pooling (shared by build and encoder)
    encoder.py  `OnnxEmbedding`, the llama-index embedder the runtime uses
"""

from rag.onnx_embed.build import (
    EXPORT_OPSET,
    RECIPE,
    Quantize,
    cache_root,
    ensure_model,
    model_hash,
)
from rag.onnx_embed.encoder import OnnxEmbedding

__all__ = [
    "EXPORT_OPSET",
    "RECIPE",
    "OnnxEmbedding",
    "Quantize",
    "cache_root",
    "ensure_model",
    "model_hash",
]
