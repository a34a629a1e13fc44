"""Rollout backend ``openai``: attaches to running OpenAI-compatible completion servers
by address and samples through ``POST /v1/completions`` with prompt token ids.

Weights (``openai.weights``), because the OpenAI API has no weight-update endpoint:

- ``frozen`` (default): the server's weights never change. The backend has no update
  surface, and a training run is refused unless ``weight_sync.strategy=frozen`` (this
  plugin's strategy, which pushes nothing and leaves the policy version alone) says
  the user means it: every sample then comes from the server's fixed model, not from
  the policy being trained, and from step 2 on counts in
  ``rollout/samples_stale_version``.
- ``sglang_disk``: the server is SGLang. The backend also is the
  :class:`~grpo_plug.api.WeightUpdateSurface`, through SGLang's native endpoints on
  the same host (``/pause_generation``, ``/update_weights_from_disk``,
  ``/get_weights_by_name``, ``/continue_generation``), so ``weight_sync.strategy=disk``
  (what ``auto`` picks on one GPU or CPU) loads and verifies every step's weights.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from grpo_plug.api import (
    ComponentRegistry,
    ConfigError,
    GenerationRequest,
    RequestFailed,
    RolloutBackend,
    RolloutBackendFactory,
    RolloutContext,
    Sample,
    TrainConfig,
    WeightSyncFactory,
    hookimpl,
    option,
)
from grpo_plug_openai.wire import TokenIdMode, completion_body, http_failure, parse_completion

CONNECT_TIMEOUT_S = 10.0
CONTROL_TIMEOUT_S = 600.0  # a weight load of a large model takes minutes
DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class OpenAIConfig:
    """Keys ``openai.*`` (see ``grpo-plug config keys``)."""

    base_urls: list[str] = option(
        [],
        "openai backend: the servers' OpenAI API roots, e.g. http://127.0.0.1:30000/v1; "
        "each request goes to the one with the fewest requests in flight.",
    )
    model: str = option(
        "", "openai backend: the `model` field sent; empty = the first id of GET <url>/models."
    )
    api_key_env: str = option(
        "",
        "openai backend: environment variable holding the API key, sent as "
        "`Authorization: Bearer`; empty = no key.",
    )
    timeout: float = option(600.0, "openai backend: seconds one HTTP request may take.", gt=0.0)
    token_ids: Literal["return_token_ids", "token_id_strings"] = option(
        "return_token_ids",
        "openai backend: how the server returns the completion's token ids: "
        "return_token_ids (choices[].token_ids; SGLang) or token_id_strings "
        "(logprobs.tokens as 'token_id:N'; vLLM's return_tokens_as_token_ids).",
    )
    weights: Literal["frozen", "sglang_disk"] = option(
        "frozen",
        "openai backend: frozen = the server's weights never change (training needs "
        "weight_sync.strategy=frozen); sglang_disk = the server is SGLang and loads each "
        "step's weights from disk (weight_sync.strategy=disk).",
    )
    weight_dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto",
        "openai backend, sglang_disk: the server's parameter dtype, for verifying a sync; "
        "auto = the server's /server_info dtype.",
    )
    seeded: bool = option(
        False,
        "openai backend: send the request seed (sample i: seed + i, one HTTP request per "
        "sample); only servers that honour per-request seeds reproduce samples.",
    )


class OpenAIBackend:
    """``/v1/completions`` on one or more servers; weights frozen (no update surface)."""

    name = "openai"
    colocated = False
    in_process = False
    # Tag samples from the reply's weight versions? Only where this run sets them: a
    # frozen server's own label ("default", or a version an earlier run loaded) says
    # nothing about this run's policies.
    reply_tags = False

    def __init__(
        self,
        base_urls: Sequence[str],
        models: Sequence[str],
        stop_ids: Sequence[int],
        *,
        mode: TokenIdMode = "return_token_ids",
        timeout: float = 600.0,
        api_key: str | None = None,
        seeded: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_urls or len(models) != len(base_urls):
            raise ValueError("one model name per base URL, at least one of each")
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self.models = list(models)
        self.stop_ids = list(stop_ids)
        self.mode: TokenIdMode = mode
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.seeded = seeded
        self.transport = transport  # tests: httpx.MockTransport
        self.version = 0
        self.in_flight = [0] * len(self.base_urls)
        self.requests = [0] * len(self.base_urls)
        self.failures = 0
        self._counted: dict[str, float] = {}

    # ------------------------------------------------------------------ generation

    def set_policy_version(self, version: int) -> None:
        self.version = version

    def pick(self) -> int:
        """Fewest requests in flight, then fewest served."""
        return min(range(len(self.base_urls)), key=lambda i: (self.in_flight[i], self.requests[i]))

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        out = []
        for req in requests:
            if self.seeded and req.seed is not None:
                # One seed per sample: n samples of one seed would be n copies.
                seed = req.seed
                parts = await asyncio.gather(
                    *(self._complete(req, 1, seed + i) for i in range(req.n))
                )
                out.append([s for part in parts for s in part])
            else:
                out.append(await self._complete(req, req.n, None))
        return out

    async def _complete(self, req: GenerationRequest, n: int, seed: int | None) -> list[Sample]:
        i = self.pick()
        body = completion_body(
            req, model=self.models[i], stop_ids=self.stop_ids, mode=self.mode, n=n, seed=seed
        )
        url = f"{self.base_urls[i]}/completions"
        version = self.version  # the policy the server holds as the request is sent
        self.in_flight[i] += 1
        self.requests[i] += 1
        try:
            async with httpx.AsyncClient(
                transport=self.transport,
                timeout=httpx.Timeout(self.timeout, connect=CONNECT_TIMEOUT_S),
                headers=self.headers,
            ) as client:
                resp = await client.post(url, json=body)
        except httpx.HTTPError as e:
            self.failures += 1
            raise RequestFailed(f"{url}: {type(e).__name__}: {e}", retryable=True) from None
        finally:
            self.in_flight[i] -= 1
        if resp.status_code >= 300:
            self.failures += 1
            raise http_failure(url, resp.status_code, resp.text)
        try:
            payload = resp.json()
            return parse_completion(payload, req, n, self.mode, version, reply_tags=self.reply_tags)
        except (ValueError, TypeError, KeyError) as e:
            self.failures += 1
            # Malformed is retryable for the controller; a missing feature fails every try.
            raise RequestFailed(f"{url}: bad reply: {e}", retryable=True) from None

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        return asyncio.run(self.agenerate(requests))

    def stats(self) -> dict[str, float]:
        """Counters since the last call: requests per server, failed requests."""
        totals = {f"openai/server{i}/requests": float(n) for i, n in enumerate(self.requests)}
        totals["openai/failed_requests"] = float(self.failures)
        out = {k: v - self._counted.get(k, 0.0) for k, v in totals.items()}
        self._counted = totals
        return out

    def close(self) -> None:
        pass  # attached servers are not ours to stop; HTTP clients live per request


def native_root(base_url: str) -> str:
    """``http://h:p/v1`` -> ``http://h:p``: where SGLang's native endpoints live."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class SGLangDiskBackend(OpenAIBackend):
    """The same backend on SGLang servers, plus the update surface the ``disk``
    strategy drives on every server (pause -> load -> verify -> continue)."""

    reply_tags = True  # /update_weights_from_disk sets them to this run's versions

    def __init__(self, *args: Any, weight_dtype: str = "bfloat16", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dtype = weight_dtype
        self.roots = [native_root(u) for u in self.base_urls]

    def _call(self, root: str, method: str, path: str, body: Any = None) -> Any:
        try:
            resp = httpx.request(
                method,
                root + path,
                json=body,
                headers=self.headers,
                timeout=httpx.Timeout(CONTROL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            )
        except httpx.HTTPError as e:
            raise RequestFailed(f"{root}{path}: {type(e).__name__}: {e}", retryable=True) from None
        if resp.status_code >= 300:
            raise http_failure(root + path, resp.status_code, resp.text)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    def _each(self, method: str, path: str, body: Any = None) -> list[Any]:
        return [self._call(r, method, path, body) for r in self.roots]

    @property
    def weight_dtype(self) -> str:
        return self._dtype

    def pause_generation(self) -> None:
        # abort mode: in-flight completions answer finish_reason "abort"; the controller
        # resubmits them with their tokens so far.
        self._each("POST", "/pause_generation", {"mode": "abort"})

    def continue_generation(self) -> None:
        self._each("POST", "/continue_generation", {})

    def update_weights_from_disk(self, path: str, version: int) -> None:
        body = {
            "model_path": path,
            "load_format": None,
            "abort_all_requests": True,
            "weight_version": str(version),
            "flush_cache": True,
        }
        for root, reply in zip(
            self.roots, self._each("POST", "/update_weights_from_disk", body), strict=True
        ):
            if not isinstance(reply, dict) or reply.get("success") is False:
                raise RequestFailed(f"{root}/update_weights_from_disk: {reply!r}", retryable=False)

    def read_weights(self, name: str, rows: int) -> list[Any]:
        import torch

        body = {"name": name, "truncate_size": rows}
        return [
            torch.tensor(r, dtype=torch.float32)
            for r in self._each("POST", "/get_weights_by_name", body)
        ]


# ----------------------------------------------------------------------- factory


def _models(settings: OpenAIConfig, headers: dict[str, str]) -> list[str]:
    if settings.model:
        return [settings.model] * len(settings.base_urls)
    out = []
    for url in settings.base_urls:
        where = f"{url.rstrip('/')}/models"
        try:
            resp = httpx.get(where, headers=headers, timeout=30.0)
            resp.raise_for_status()
            out.append(str(resp.json()["data"][0]["id"]))
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as e:
            raise ConfigError(
                f"openai.model: empty, and {where} gave no model id ({type(e).__name__}: {e}); "
                "is the server up? set openai.model=NAME to skip the lookup"
            ) from None
    return out


def _server_dtype(settings: OpenAIConfig, headers: dict[str, str]) -> str:
    if settings.weight_dtype != "auto":
        return settings.weight_dtype
    seen = set()
    for url in settings.base_urls:
        where = f"{native_root(url)}/server_info"
        try:
            resp = httpx.get(where, headers=headers, timeout=30.0)
            resp.raise_for_status()
            seen.add(str(resp.json().get("dtype")))
        except (httpx.HTTPError, ValueError, AttributeError) as e:
            raise ConfigError(
                f"openai.weights=sglang_disk: {where} did not answer ({type(e).__name__}: "
                f"{e}); is it an SGLang server?"
            ) from None
    if len(seen) != 1 or not seen <= set(DTYPES):
        raise ConfigError(
            f"openai.weight_dtype=auto: the servers report dtype {sorted(seen)}; "
            f"set openai.weight_dtype to one of {', '.join(DTYPES)}"
        )
    return seen.pop()


def make_openai_backend(cfg: TrainConfig, ctx: RolloutContext) -> RolloutBackend:
    """OpenAI-compatible /v1/completions servers (SGLang, vLLM), attached by address."""
    settings = cfg.section(OpenAIConfig)
    if not settings.base_urls:
        raise ConfigError(
            "openai.base_urls: set at least one server, e.g. "
            "openai.base_urls=http://127.0.0.1:30000/v1"
        )
    if settings.weights == "frozen" and cfg.weight_sync.strategy != "frozen":
        raise ConfigError(
            "openai.weights=frozen: an OpenAI-compatible server cannot take the learner's "
            f"weights, so weight_sync.strategy={cfg.weight_sync.strategy} cannot work and "
            "training would sample from the server's fixed model. Set "
            "weight_sync.strategy=frozen to train on those samples anyway, or "
            "openai.weights=sglang_disk when the server is SGLang"
        )
    api_key = None
    if settings.api_key_env:
        api_key = os.environ.get(settings.api_key_env)
        if not api_key:
            raise ConfigError(
                f"openai.api_key_env: environment variable {settings.api_key_env} is not set"
            )
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    tok = ctx.tokenizer
    stop_ids = sorted({i for i in (tok.eos_token_id, tok.pad_token_id) if i is not None})
    common: dict[str, Any] = {
        "mode": settings.token_ids,
        "timeout": settings.timeout,
        "api_key": api_key,
        "seeded": settings.seeded,
    }
    models = _models(settings, headers)
    if settings.weights == "sglang_disk":
        dtype = _server_dtype(settings, headers)
        return SGLangDiskBackend(settings.base_urls, models, stop_ids, weight_dtype=dtype, **common)
    return OpenAIBackend(settings.base_urls, models, stop_ids, **common)


# ----------------------------------------------------------------------- frozen strategy


class FrozenServer:
    """Pushes nothing: the server keeps its own weights, and the policy version stays
    where it is, so samples are never tagged with a policy that did not make them."""

    name = "frozen"

    def __init__(self, cfg: TrainConfig) -> None:
        self.skipped: list[int] = []  # versions not pushed

    def sync(self, model: Any, backend: RolloutBackend, version: int) -> None:
        self.skipped.append(version)

    def close(self) -> None:
        pass


@hookimpl
def register_rollout_backends(registry: ComponentRegistry[RolloutBackendFactory]) -> None:
    registry.register("openai", make_openai_backend, config=OpenAIConfig)


@hookimpl
def register_weight_sync_strategies(registry: ComponentRegistry[WeightSyncFactory]) -> None:
    registry.register(
        "frozen",
        FrozenServer,
        description="no weight sync: the server keeps its weights (rollout.backend=openai)",
    )
