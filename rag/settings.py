"""One `Settings` object for the whole application, read from RAG_* environment variables and `.env`.

Every field is documented here and mirrored, with its default, in `.env.example`
(a test keeps the two in step). Front-ends never read the environment themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BUNDLED_MODEL = "all-MiniLM-L6-v2"


class Settings(BaseSettings):
    """All knobs of `rag`. Environment variable = `RAG_` + field name in upper case."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        # inf and NaN are no setting's value (RAG_MAX_UPLOAD_MB=inf crashed the UI at start).
        allow_inf_nan=False,
    )

    # --- storage -------------------------------------------------------------------------------
    data_dir: Path = Field(
        Path(".rag"), description="Directory holding all local state (embedded Chroma, caches)."
    )
    collection: str = Field("papers", description="Chroma collection name.")
    chroma_host: str | None = Field(
        None, description="Chroma server host (`chroma run`); unset = embedded store in data_dir."
    )
    chroma_port: int = Field(8000, ge=1, le=65535, description="Chroma server port.")

    # --- embeddings and chunking ----------------------------------------------------------------
    embed_model: str = Field(
        BUNDLED_MODEL,
        description="Embedding model: the bundled all-MiniLM-L6-v2, or a local sentence-transformers dir.",
    )
    embed_backend: Literal["torch", "onnx"] = Field(
        "onnx",
        description="Encoder runtime: onnx (int8, made locally once from the bundled weights; "
        "2.1-2.5x faster ingest than torch, same eval figures, docs/performance.md) or torch (fp32).",
    )
    embed_batch_size: int | None = Field(
        None,
        ge=1,
        description="Texts per encoder batch; empty = the backend's best (CPU: onnx 1, int8 vectors then never depend on batch mates; torch 64. GPU: 256).",
    )
    embed_threads: int | None = Field(
        None,
        ge=1,
        description="Texts the onnx encoder runs at once, one core each; empty = every core this process may use.",
    )
    embed_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where the encoder runs: auto = a CUDA GPU when the backend can use one "
        "(onnxruntime-gpu or a CUDA torch), else the CPU; cuda = the GPU or a clear error; cpu. "
        "On a GPU the onnx encoder is fp32 (its stores carry torch's fingerprint).",
    )
    ray_address: str | None = Field(
        None,
        description="`rag ingest` encodes on a Ray cluster (extra `ray`): auto = the running "
        "cluster (RAY_ADDRESS or this machine's), local = a private one on 127.0.0.1, or an "
        "address (ray://head:10001); unset = encode in this process (docs/scale.md).",
    )
    chunk_tokens: int = Field(
        180,
        ge=32,
        le=240,
        description="Target chunk size in tiktoken (cl100k) tokens, title included.",
    )
    chunk_overlap: int = Field(24, ge=0, description="Token overlap between consecutive chunks.")
    max_abstract_chars: int = Field(
        20_000, ge=100, description="Longer abstracts are rejected as malformed input."
    )
    max_id_chars: int = Field(
        256,
        ge=16,
        description="Longer record ids are rejected (an id is copied into every chunk id and index row).",
    )

    # --- retrieval -----------------------------------------------------------------------------
    top_k: int = Field(5, ge=1, le=50, description="Number of numbered sources per answer.")
    retrieval: Literal["dense", "hybrid"] = Field(
        "hybrid", description="dense = vectors only; hybrid = vectors fused with BM25."
    )
    hybrid_alpha: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Hybrid fusion weight of the dense cosine (1 - weight of BM25).",
    )
    min_score: float = Field(
        0.30,
        description="Abstain before answering when the best source's cosine similarity is below this.",
    )

    # --- answering -----------------------------------------------------------------------------
    llm: str = Field(
        "auto",
        description="Answer backend, a name in rag.backends' registry (extractive, openai, local); "
        "auto = openai if a base URL or API key is set, else local if the `local` extra "
        "(llama-cpp-python + the bundled model, or RAG_LLM_GGUF) is installed, else extractive.",
    )
    llm_base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1."
    )
    llm_model: str = Field("gpt-4o-mini", description="Model name sent to the endpoint.")
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("RAG_OPENAI_API_KEY", "OPENAI_API_KEY"),
        description="API key for the endpoint (OPENAI_API_KEY also works). Never logged.",
    )
    llm_timeout: float = Field(30.0, gt=0, description="Total seconds allowed for one LLM answer.")
    llm_max_retries: int = Field(2, ge=0, description="Retries on connection errors, 429 and 5xx.")
    llm_temperature: float = Field(0.0, ge=0, le=2)
    llm_gguf: Path | None = Field(
        None,
        description="GGUF file for llm=local; unset = the bundled Qwen2.5-Coder-1.5B-Instruct "
        "(extra `local`).",
    )
    context_tokens: int = Field(
        360,
        ge=64,
        description="Token budget for the source excerpts an LLM is shown (the sentences of each "
        "source that bear on the question; prompt size is latency on a CPU).",
    )
    llm_max_tokens: int = Field(
        160, ge=16, le=4096, description="Most tokens an LLM may write for one answer."
    )
    extractive_sentences: int = Field(
        3,
        ge=1,
        le=20,
        description="Most sentences the extractive backend quotes in one answer (at most two "
        "from one paper, one for a list question).",
    )
    history_tokens: int = Field(1000, ge=0, description="Token budget for chat history.")

    # --- verification --------------------------------------------------------------------------
    verify_judge: Literal["offline", "llm"] = Field(
        "offline", description="Citation judge: offline (embeddings + lexical + numbers) or llm."
    )
    unsupported: Literal["drop", "flag"] = Field(
        "drop", description="What to do with a sentence no source supports: drop it or flag it."
    )
    excerpt_rank: Literal["answerable", "similarity"] = Field(
        "answerable",
        description="How a chat model's excerpt sentences are picked: answerable = by the "
        "extractive backend's fitted P(sentence answers); similarity = embedding + word overlap.",
    )
    answer_gate: Literal["retrieval", "answerable"] = Field(
        "retrieval",
        description="Before a chat model is asked: retrieval = the retrieval score and names gate "
        "(RAG_MIN_SCORE); answerable = also the extractive backend's fitted answerability model "
        "(no model call unless some source sentence likely answers; off by default: on dev it "
        "refused one more answerable question and caught no more unanswerable ones).",
    )
    name_papers: bool = Field(
        True,
        description="List questions (which papers ..., compare, both): the first sentence shown "
        "from each paper opens with the paper's title, unless it already names the paper.",
    )
    unverified_answer: Literal["extractive", "refuse"] = Field(
        "extractive",
        description="When no sentence of a chat model's answer is supported: answer with the "
        "sources' own sentences (extractive, which abstains on its own evidence) or refuse.",
    )

    # --- front-ends ----------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the UI / API binds to.")
    port: int = Field(7860, ge=1, le=65535, description="Port of the UI / API.")
    api_key: SecretStr | None = Field(
        None, description="Bearer token required by the API when set."
    )
    api_cors_origins: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="Web origins allowed to call /v1 from a browser (CORS), comma-separated, "
        "e.g. https://app.example.com,http://localhost:3000; * = any; empty = none.",
    )
    max_upload_mb: float = Field(20.0, gt=0, description="Largest corpus file accepted by the UI.")
    ui_ingest: Literal["auto", "key", "open", "off"] = Field(
        "auto",
        description="Who may add papers through the UI: key = only with RAG_API_KEY typed in the "
        "page; open = anyone who can reach the page; off = nobody (use `rag ingest`); auto = key "
        "if RAG_API_KEY is set, else open on a loopback host and off on any other (docs/ui.md).",
    )

    @field_validator("llm_base_url", "chroma_host", "llm_gguf", "ray_address", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        """ "a, b" (the environment) or a list -> origins without a trailing slash; none = None."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            origins = [str(o).strip().rstrip("/") for o in value if str(o).strip()]
            return origins or None
        return value

    @field_validator("openai_api_key", "api_key", mode="before")
    @classmethod
    def _blank_secret_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("llm")
    @classmethod
    def _registered_backend(cls, value: str) -> str:
        """A backend registers its name (rag.backends.register); Settings names none itself, so
        adding one touches only its own module."""
        from rag.backends import names

        if value != "auto" and value not in names():
            raise ValueError(f"Input should be 'auto' or one of: {', '.join(map(repr, names()))}")
        return value

    @property
    def resolved_llm(self) -> str:
        """The backend `auto` resolves to."""
        if self.llm != "auto":
            return self.llm
        if self.llm_base_url or self.openai_api_key:
            return "openai"
        from rag.backends.model_file import installed

        return "local" if installed(self.llm_gguf is not None) else "extractive"

    def with_overrides(self, **overrides: object) -> Settings:
        """A copy with some fields replaced and validated (used by `--set key=value`)."""
        data = self.model_dump()
        data.update(overrides)
        return Settings.model_validate(
            {k: (v.get_secret_value() if isinstance(v, SecretStr) else v) for k, v in data.items()}
        )
