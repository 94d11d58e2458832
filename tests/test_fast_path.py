"""The GPU fast path (static KV cache, persistent hooks, compiled decoding step), checked on the CPU.

torch.compile runs with backend="eager" here (graph capture without the code generator), which is
quick on a CPU and exercises what matters: the same greedy tokens as the eager path, and no
recompile when alpha, the layer or the vector changes.
"""

from __future__ import annotations

import pytest
import torch
from fixtures import DRAGON, PLANET

from steering.decode.decoder import EagerDecoder
from steering.decode.fast_path import FastPath, PersistentSteering
from steering.decode.generation import SamplingSettings, SteeringSpec, generate

GREEDY = SamplingSettings(max_new_tokens=10, temperature=0.0)
Q1, Q2 = PLANET, DRAGON


@pytest.fixture()
def model(tiny_tokenizer):
    from fixtures import make_tiny_model

    return make_tiny_model(len(tiny_tokenizer))  # own copy: the fast path registers hooks on it


@pytest.fixture(scope="module")
def vector():
    torch.manual_seed(1)
    return torch.randn(64) * 4.0


def _eager(model, tok, convs, alphas, layer, vector):
    return generate(model, tok, convs, multipliers=alphas, steer=SteeringSpec(layer, vector), settings=GREEDY)


# The fast path's variants a CPU can run: static cache + persistent hooks (what `compile: true` gives
# without inductor) and the same with torch.compile capturing the decoding step (backend "eager").
FAST_KINDS = {"static": dict(compile=False), "compiled": dict(compile=True, backend="eager")}


@pytest.fixture(params=sorted(FAST_KINDS))
def fast(request, model):
    return FastPath(model, bucket=64, **FAST_KINDS[request.param])


def test_static_cache_path_matches_eager(model, tiny_tokenizer, vector):
    fast = FastPath(model, compile=False, bucket=64)
    for alphas, layer in (([3.0, 0.0, -3.0], 1), ([1.5, 0.0, -1.5], 2)):
        expected = _eager(model, tiny_tokenizer, [Q1, Q2, Q1], alphas, layer, vector)  # hooks idle: multipliers 0
        got = fast.generate(
            tiny_tokenizer, [Q1, Q2, Q1], multipliers=alphas, steer=SteeringSpec(layer, vector), settings=GREEDY
        )
        assert got.token_ids == expected.token_ids
    plain = generate(model, tiny_tokenizer, [Q2], settings=GREEDY)
    assert fast.generate(tiny_tokenizer, [Q2], settings=GREEDY).token_ids == plain.token_ids


def test_compiled_path_matches_eager_and_never_recompiles_for_alpha(model, tiny_tokenizer, vector):
    torch._dynamo.reset()  # dynamo's code cache is process-wide: another test's compile must not be reused here
    fast = FastPath(model, compile=True, backend="eager", bucket=64)
    identity = [t.data_ptr() for t in fast.steering.tensors()]
    first = fast.generate(
        tiny_tokenizer, [Q1, Q2, Q1], multipliers=[3.0, 0.0, -3.0], steer=SteeringSpec(1, vector), settings=GREEDY
    )
    compiles = fast.graph_count()
    assert compiles >= 1
    for alphas, layer, vec in (
        ([1.0, 0.0, -1.0], 1, vector),
        ([5.0, 0.0, -5.0], 3, -vector),
        ([3.0, 0.0, -3.0], 1, vector),
    ):
        result = fast.generate(
            tiny_tokenizer, [Q1, Q2, Q1], multipliers=alphas, steer=SteeringSpec(layer, vec), settings=GREEDY
        )
        assert result.token_ids == _eager(model, tiny_tokenizer, [Q1, Q2, Q1], alphas, layer, vec).token_ids
    assert result.token_ids == first.token_ids  # back to the first settings: the same tokens
    assert fast.graph_count() == compiles, "changing alpha, layer or vector must not recompile"
    assert [t.data_ptr() for t in fast.steering.tensors()] == identity


def test_persistent_hooks_are_exact_noops_at_zero(model, tiny_tokenizer, vector):
    plain = generate(model, tiny_tokenizer, [Q1], settings=GREEDY)
    hooks = PersistentSteering(model)
    try:
        assert len(model.model.layers[0]._forward_hooks) == 1
        assert generate(model, tiny_tokenizer, [Q1], settings=GREEDY).token_ids == plain.token_ids
        with hooks.context(model, 2, vector, [2.0], [0]):
            assert generate(model, tiny_tokenizer, [Q1], settings=GREEDY).token_ids != plain.token_ids
        assert float(hooks.multipliers.abs().sum()) == 0.0  # cleared on exit
    finally:
        hooks.remove()
    assert len(model.model.layers[0]._forward_hooks) == 0


def test_hooks_act_only_inside_the_fast_paths_own_generation(fast, tiny_tokenizer, vector):
    """Issue 10 item 3: with the fast path's hooks on the model, every other forward (eager generation,
    extraction, the A/B evaluation; any batch size) runs as if they were not there."""
    from fixtures import make_tiny_model

    reference = make_tiny_model(len(tiny_tokenizer))  # same weights, no hooks
    fast.generate(
        tiny_tokenizer, [Q1, Q2, Q1], multipliers=[4.0, 0.0, -4.0], steer=SteeringSpec(1, vector), settings=GREEDY
    )
    model = fast.model
    ids = torch.randint(0, len(tiny_tokenizer), (9, 10), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for rows in (1, 3, 4, 9):
            assert torch.equal(model(input_ids=ids[:rows]).logits, reference(input_ids=ids[:rows]).logits)
    convs = [Q1, Q2] * 3  # 6 rows, eagerly steered with the fast path's hooks registered
    args = dict(multipliers=[2.0, -2.0, 0.0, 1.0, -1.0, 0.0], steer=SteeringSpec(2, vector), settings=GREEDY)
    assert (
        generate(model, tiny_tokenizer, convs, **args).token_ids
        == generate(reference, tiny_tokenizer, convs, **args).token_ids
    )
    with pytest.raises(RuntimeError, match="inside"):  # even an exception inside leaves the hooks idle
        with fast.steering.context(model, 1, vector, [1.0], [0]):
            raise RuntimeError("inside")
    with torch.inference_mode():
        assert torch.equal(model(input_ids=ids[:1]).logits, reference(input_ids=ids[:1]).logits)


def test_any_batch_size_runs_on_the_fast_path(fast, tiny_tokenizer, vector):
    """More rows than max_batch (4) grow the steering tensors; the tokens equal the eager path's."""
    convs = [Q1, Q2, Q1, Q2, Q1, Q2, Q1, Q2, Q1]
    for rows in (9, 3, 6):
        alphas = [(-1.0) ** row * (row % 4) for row in range(rows)]
        got = fast.generate(
            tiny_tokenizer, convs[:rows], multipliers=alphas, steer=SteeringSpec(1, vector), settings=GREEDY
        )
        assert got.token_ids == _eager(fast.model, tiny_tokenizer, convs[:rows], alphas, 1, vector).token_ids
    assert fast.steering.max_batch == 16 and fast.steering.version == 1
    assert fast.takes(9) == (not fast.compiled)  # compiled: big batches go eager unless asked for directly


def test_sampled_rows_share_one_random_stream(fast, tiny_tokenizer, vector):
    """Issue 10 item 4: at temperature > 0 a row's tokens depend on its logits and the seed only."""
    settings = SamplingSettings(max_new_tokens=12, temperature=0.8, top_p=0.9, seed=0)
    plain = generate(fast.model, tiny_tokenizer, [Q2], settings=settings).token_ids[0]
    eager = generate(fast.model, tiny_tokenizer, [Q2] * 3, settings=settings).token_ids
    assert eager == [plain] * 3
    alone = generate(fast.model, tiny_tokenizer, [Q1], settings=settings).token_ids[0]
    assert generate(fast.model, tiny_tokenizer, [Q1, Q2, Q1], settings=settings).token_ids == [alone, plain, alone]
    steered = fast.generate(
        tiny_tokenizer, [Q2] * 3, multipliers=[3.0, 0.0, -3.0], steer=SteeringSpec(1, vector), settings=settings
    ).token_ids
    assert steered[1] == plain and steered[0] != plain and steered[2] != plain
    assert fast.generate(tiny_tokenizer, [Q2], settings=settings).token_ids[0] == plain
    greedy = generate(fast.model, tiny_tokenizer, [Q2], settings=SamplingSettings(max_new_tokens=12)).token_ids[0]
    other_seed = generate(
        fast.model,
        tiny_tokenizer,
        [Q2],
        settings=SamplingSettings(max_new_tokens=12, temperature=0.8, top_p=0.9, seed=1),
    ).token_ids[0]
    assert plain != greedy and plain != other_seed


def test_nucleus_sampling_keeps_to_the_nucleus():
    """The inverse-CDF draw never picks a token outside the top-p nucleus or of probability 0."""
    from steering.decode.generation import _next_tokens

    logits = torch.tensor([[5.0, 4.0, 0.0, -1e9], [0.0, 0.0, 0.0, float("-inf")]]).repeat(50, 1)
    generator = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        tokens = _next_tokens(logits, SamplingSettings(temperature=1.0, top_p=0.7, seed=0), generator)
        seen.update((row % 2, int(t)) for row, t in enumerate(tokens.tolist()))
    assert {t for r, t in seen if r == 0} == {0}  # p = 0.73 for token 0 covers top-p 0.7
    assert {t for r, t in seen if r == 1} == {0, 1, 2}  # the -inf token never


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sampling_draws_from_the_tempered_distribution(temperature):
    """The shared-noise (Gumbel-max) draw is a sample of softmax(logits / T): frequencies over many steps."""
    from steering.decode.generation import _next_tokens

    p = torch.tensor([0.5, 0.3, 0.2])
    logits = p.log().unsqueeze(0)
    generator = torch.Generator().manual_seed(0)
    settings = SamplingSettings(temperature=temperature)
    draws = torch.stack([_next_tokens(logits, settings, generator) for _ in range(4000)]).flatten()
    expected = p ** (1 / temperature) / (p ** (1 / temperature)).sum()
    assert torch.allclose(torch.bincount(draws, minlength=3).float() / 4000, expected, atol=0.03)


def test_static_caches_are_bounded(model, tiny_tokenizer):
    """At most MAX_CACHES caches, and one of a batch beyond max_batch (large batches pass through)."""
    fast = FastPath(model, compile=False, bucket=32, max_batch=4)
    settings = SamplingSettings(max_new_tokens=4)
    for rows in (3, 1, 6, 9, 3):
        fast.generate(tiny_tokenizer, [Q1] * rows, settings=settings)
    assert sorted(fast._caches) == [(1, 64), (3, 64), (9, 64)]
    fast.MAX_CACHES = 2
    for tokens in (40, 80):
        fast.generate(tiny_tokenizer, [Q1] * 3, settings=SamplingSettings(max_new_tokens=tokens))
    assert list(fast._caches) == [(3, 96), (3, 128)]


def test_bucketed_static_caches_are_reused(model, tiny_tokenizer):
    fast = FastPath(model, compile=False, bucket=64)
    fast.generate(tiny_tokenizer, [Q1, Q1, Q1], settings=GREEDY)
    fast.generate(tiny_tokenizer, [Q1, Q1, Q1], settings=GREEDY)
    assert len(fast._caches) == 1
    fast.generate(tiny_tokenizer, [Q2], settings=SamplingSettings(max_new_tokens=80))  # another bucket
    (b1, len1), (b3, len3) = sorted(fast._caches)
    assert (b1, b3, len3) == (1, 3, 64) and len1 % 64 == 0 and len1 > 64


def test_ignore_eos_gives_exact_lengths(model, tiny_tokenizer):
    model.generation_config.eos_token_id = tiny_tokenizer.convert_tokens_to_ids("<|end|>")
    try:
        result = generate(model, tiny_tokenizer, [Q1, Q2], settings=SamplingSettings(max_new_tokens=7), ignore_eos=True)
    finally:
        model.generation_config.eos_token_id = None
    assert [len(ids) for ids in result.token_ids] == [7, 7]


def test_streamed_text_matches_full_decode(model, tiny_tokenizer):
    seen = []
    result = generate(
        model, tiny_tokenizer, [Q1, Q2], settings=SamplingSettings(max_new_tokens=16), on_text=seen.append
    )
    assert len(seen) == 16
    assert seen[-1] == result.texts


def test_incremental_decoding_waits_for_whole_characters(tiny_tokenizer):
    from steering.decode.generation import _StreamingText

    ids = tiny_tokenizer("Héllo wörld, 你好 🙂!", add_special_tokens=False)["input_ids"]
    stream = _StreamingText(tiny_tokenizer, 1)
    for n in range(1, len(ids) + 1):
        shown = stream.update([ids[:n]])[0]
        assert "\ufffd" not in shown
        assert tiny_tokenizer.decode(ids[:n]).startswith(shown)
    assert shown == "Héllo wörld, 你好 🙂!"


def test_lookahead_decoding_gives_the_same_tokens_and_stops_on_time(model, tiny_tokenizer, vector):
    import threading

    model.generation_config.eos_token_id = tiny_tokenizer.convert_tokens_to_ids("<|end|>")
    try:
        settings = SamplingSettings(max_new_tokens=12)
        args = dict(multipliers=[2.0, 0.0, -2.0], steer=SteeringSpec(1, vector), settings=settings)
        plain = generate(model, tiny_tokenizer, [Q1, Q2, Q1], lookahead=False, **args)
        sampled = generate(
            model, tiny_tokenizer, [Q1, Q2], settings=SamplingSettings(temperature=1.0, seed=3), lookahead=False
        )
        args["lookahead"] = True
        assert generate(model, tiny_tokenizer, [Q1, Q2, Q1], **args).token_ids == plain.token_ids
        fast = FastPath(model, compile=False, bucket=64)
        assert fast.generate(tiny_tokenizer, [Q1, Q2, Q1], **args).token_ids == plain.token_ids
        again = generate(
            model, tiny_tokenizer, [Q1, Q2], settings=SamplingSettings(temperature=1.0, seed=3), lookahead=True
        )
        assert again.token_ids == sampled.token_ids
        stop, seen = threading.Event(), []

        def on_text(texts):
            seen.append(texts)
            if len(seen) == 3:
                stop.set()

        result = generate(model, tiny_tokenizer, [Q1, Q1, Q1], on_text=on_text, stop_event=stop, **args)
        assert result.stopped and result.new_tokens == [3, 3, 3]
    finally:
        model.generation_config.eos_token_id = None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_cuda_graph_steps_match_eager_and_follow_alpha_and_layer(tiny_tokenizer, vector):
    from fixtures import make_tiny_model

    model = make_tiny_model(len(tiny_tokenizer)).cuda()
    fast = FastPath(model, compile=False, bucket=64, cuda_graphs=True)
    convs = [Q1, Q2, Q1]
    for alphas, layer, vec in (
        ([3.0, 0.0, -3.0], 1, vector),
        ([1.0, 0.0, -1.0], 1, vector),
        ([5.0, 0.0, -5.0], 3, -vector),
        ([3.0, 0.0, -3.0], 1, vector),
    ):
        expected = _eager(model, tiny_tokenizer, convs, alphas, layer, vec.cuda())
        got = fast.generate(tiny_tokenizer, convs, multipliers=alphas, steer=SteeringSpec(layer, vec), settings=GREEDY)
        assert got.token_ids == expected.token_ids
    assert len(fast.graphs.graphs) == 2  # one capture per steered layer; alpha and vector are data
    plain = generate(model, tiny_tokenizer, [Q2], settings=GREEDY)
    assert fast.generate(tiny_tokenizer, [Q2], settings=GREEDY).token_ids == plain.token_ids


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_cuda_graph_steps_after_growth_and_cache_eviction(tiny_tokenizer, vector):
    """A batch beyond the steering tensors (re-capture) and evicted static caches (their graphs dropped):
    the graphs are captured again into a fresh memory pool and still give the eager tokens."""
    from fixtures import make_tiny_model

    model = make_tiny_model(len(tiny_tokenizer)).cuda()
    fast = FastPath(model, compile=False, bucket=32, cuda_graphs=True)
    fast.MAX_CACHES = 2
    convs = [Q1, Q2, Q1, Q2, Q1, Q2, Q1, Q2, Q1]
    for rows, tokens in ((3, 10), (9, 10), (3, 10), (3, 40), (9, 40), (3, 10)):
        alphas = [(-1.0) ** row * (1 + row % 3) for row in range(rows)]
        settings = SamplingSettings(max_new_tokens=tokens)
        expected = generate(
            model,
            tiny_tokenizer,
            convs[:rows],
            multipliers=alphas,
            steer=SteeringSpec(1, vector.cuda()),
            settings=settings,
        )
        got = fast.generate(
            tiny_tokenizer, convs[:rows], multipliers=alphas, steer=SteeringSpec(1, vector), settings=settings
        )
        assert got.token_ids == expected.token_ids, (rows, tokens)
    assert fast.steering.version == 1 and len(fast._caches) == 2


def test_models_split_over_several_gpus_take_the_eager_path(model):
    """A `device_map` model over two GPUs: no CUDA graphs or compiler (their steering tensors and graphs live on
    one device; scripts/gpu_70b.py runs such a model); a one-device map keeps them."""
    from types import SimpleNamespace

    from steering.decode.fast_path_setup import graphs_supported, model_devices

    lm = SimpleNamespace(model=model, device=torch.device("cuda", 0), quantization=None)
    assert model_devices(model) == {"cpu"} and graphs_supported(lm)
    model.hf_device_map = {"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": 1, "lm_head": 1}
    assert model_devices(model) == {"0", "1"} and not graphs_supported(lm)
    model.hf_device_map = {"": "cuda:0"}
    assert graphs_supported(lm)


def test_fast_path_logits_match_eager_at_every_step(model, tiny_tokenizer, vector):
    """Per-step logits, not only tokens (issue 12 section 2, the H200 divergence): a wrong cache position or
    steering tensor changes the logits even where the argmax survives, so every decoding step's logits of the
    static-cache path (what a CUDA graph replays) equal eager's, in float32, for steered and unsteered rows.
    On the H200 (scripts/gpu_profile.py, fp16) they agree to 0.04 of a logit scale of 5 until a near-tie."""

    def recorder(step, store):
        def call(**kwargs):
            output = step(**kwargs)
            store.append(output.logits[:, -1].float().clone())
            return output

        return call

    convs, alphas = [Q1, Q2, Q1], [3.0, 0.0, -3.0]
    plan = dict(multipliers=alphas, steer=SteeringSpec(2, vector), settings=GREEDY, ignore_eos=True)
    eager: list[torch.Tensor] = []
    expected = generate(model, tiny_tokenizer, convs, decoder=EagerDecoder(model, recorder(model, eager)), **plan)
    fast = FastPath(model, compile=False, bucket=64)
    got: list[torch.Tensor] = []
    kwargs = fast.generate_kwargs()
    kwargs["decoder"] = fast.decoder(recorder(fast.decode_step, got))
    result = generate(model, tiny_tokenizer, convs, **kwargs, **plan)
    assert result.token_ids == expected.token_ids
    assert len(got) == len(eager) == GREEDY.max_new_tokens - 1
    for step, (a, b) in enumerate(zip(eager, got)):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (step, float((a - b).abs().max()))
    # the steering is in those logits: rows 0 and 2 (Q1 steered +/-) differ from each other at every step
    assert all(float((a[0] - a[2]).abs().max()) > 1e-2 for a in got)


def test_compiled_pieces_give_the_same_tokens_and_come_off_with_the_hooks(model, tiny_tokenizer, vector):
    """The CUDA-graph path's compiled RMSNorm / MLP (CompiledPieces; backend "eager" here): one compiled forward
    per class for the one-token steps, the same tokens as without, and steering.remove() restores the modules."""
    from steering.decode.fast_path import CompiledPieces

    convs, alphas = [Q1, Q2, Q1], [3.0, 0.0, -3.0]
    plain = FastPath(model, compile=False, bucket=64)
    assert plain.pieces is None  # opt-in
    want = plain.generate(tiny_tokenizer, convs, alphas, SteeringSpec(1, vector), GREEDY).token_ids
    plain.steering.remove()
    fast = FastPath(model, compile=False, bucket=64, compile_pieces=True, pieces_backend="eager")
    pieces = fast.pieces
    assert isinstance(pieces, CompiledPieces)
    blocks = len(model.model.layers)
    assert len(pieces.patched) == 3 * blocks  # two RMSNorms and the MLP per block
    assert {cls.__name__ for cls in pieces.compiled} == {"LlamaRMSNorm", "LlamaMLP"}
    calls = []
    compiled_mlp = pieces.compiled[type(model.model.layers[0].mlp)]
    pieces.compiled[type(model.model.layers[0].mlp)] = lambda *a, **k: calls.append(1) or compiled_mlp(*a, **k)
    for module in pieces.patched:  # rebuild the wrappers around the counting function
        del module.forward
    pieces.patched = []
    for block in model.model.layers:
        for module in (block.input_layernorm, block.post_attention_layernorm, block.mlp):
            module.forward = pieces._forward(module, type(module).forward, pieces.compiled[type(module)])
            pieces.patched.append(module)
    got = fast.generate(tiny_tokenizer, convs, alphas, SteeringSpec(1, vector), GREEDY).token_ids
    assert got == want
    assert len(calls) == blocks * (GREEDY.max_new_tokens - 1)  # every one-token step, never the prompt
    fast.steering.remove()
    assert all("forward" not in vars(m) for block in model.model.layers for m in block.modules())
