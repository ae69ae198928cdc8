"""GPT-2 weight interop (llm_zero.model.hf) against Hugging Face's GPT2LMHeadModel and the book's own loader.

Everything runs offline on randomly initialised models: random weights make every row of every matrix
matter, so a wrong transpose, split order or tie shows up in the logits.
"""
import json
import sys

import pytest
import torch
from hypothesis import given, settings, strategies as st
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

from llm_zero.model.generation import generate
from llm_zero.model.gpt import GPTModel, generate_text_simple
from llm_zero.model.hf import gpt_from_hf, gpt_to_hf, load_gpt2_params_from_tf_ckpt, load_weights_into_gpt

hf_logging.set_verbosity_error()  # small test vocabularies make transformers warn about GPT-2's token ids
hf_logging.disable_progress_bar()

# Several shapes: different depth, head count, width, context; one with head_dim 1.
SIZES = [
    dict(vocab_size=97, n_positions=32, n_embd=24, n_head=4, n_layer=2),
    dict(vocab_size=300, n_positions=16, n_embd=48, n_head=3, n_layer=3),
    dict(vocab_size=50, n_positions=64, n_embd=8, n_head=8, n_layer=1),
    dict(vocab_size=128, n_positions=20, n_embd=64, n_head=2, n_layer=4),
]


def hf_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(**kwargs)).eval()


def assert_same_model(ours, theirs, vocab_size, context_length, n_new=10):
    "Logits within 1e-5 on a random full-context batch, and identical greedy continuations of 3 prompts."
    n_new = min(n_new, context_length - 5)  # Hugging Face's generate stops at n_positions; it has no sliding window
    ours.eval(), theirs.eval()
    idx = torch.randint(0, vocab_size, (3, context_length))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), theirs(idx).logits, atol=1e-5, rtol=0)
        prompt = idx[:, :5]
        mine = generate_text_simple(ours, prompt, max_new_tokens=n_new, context_size=context_length)
        ref = theirs.generate(prompt, max_new_tokens=n_new, do_sample=False, pad_token_id=0)
    assert torch.equal(mine, ref)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "L{n_layer}H{n_head}E{n_embd}T{n_positions}".format(**s))
def test_hf_to_llm_zero(size):
    theirs = hf_model(**size)
    ours = gpt_from_hf(theirs)
    assert not ours.training
    assert ours.cfg["n_heads"] == size["n_head"] and ours.cfg["qkv_bias"] is True
    assert_same_model(ours, theirs, size["vocab_size"], size["n_positions"])


@pytest.mark.parametrize("size", SIZES[:2], ids=lambda s: f"L{s['n_layer']}H{s['n_head']}")
def test_hf_to_llm_zero_sdpa(size):
    theirs = hf_model(**size)
    ours = gpt_from_hf(theirs, impl="fast")
    assert ours.cfg["impl"] == "fast"
    assert_same_model(ours, theirs, size["vocab_size"], size["n_positions"])
    # what a user runs: the fast path with the KV cache, against Hugging Face's cached generate
    prompt = torch.randint(0, size["vocab_size"], (2, 4))
    n_new = size["n_positions"] - 4
    mine = generate(ours, prompt, n_new, size["n_positions"], use_cache=True)
    with torch.no_grad():
        ref = theirs.generate(prompt, max_new_tokens=n_new, do_sample=False, use_cache=True, pad_token_id=0)
    assert torch.equal(mine, ref)


@pytest.mark.parametrize("size,qkv_bias", [(SIZES[0], False), (SIZES[1], True), (SIZES[2], False)],
                         ids=["L2H4-no-qkv-bias", "L3H3-qkv-bias", "L1H8-no-qkv-bias"])
def test_llm_zero_to_hf(tmp_path, size, qkv_bias):
    cfg = dict(vocab_size=size["vocab_size"], context_length=size["n_positions"], emb_dim=size["n_embd"],
               n_heads=size["n_head"], n_layers=size["n_layer"], drop_rate=0.0, qkv_bias=qkv_bias)
    torch.manual_seed(3)
    ours = GPTModel(cfg)  # PyTorch's default init, untied out_head: the case of a model trained with the book
    gpt_to_hf(ours, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["tie_word_embeddings"] is False and config["n_head"] == size["n_head"]
    theirs = GPT2LMHeadModel.from_pretrained(tmp_path)
    assert_same_model(ours, theirs, cfg["vocab_size"], cfg["context_length"])
    # and back: every weight bit for bit, plus zero q/k/v biases when the model had none
    back = dict(gpt_from_hf(tmp_path).named_parameters())
    for name, p in ours.named_parameters():
        assert torch.equal(back.pop(name), p), name
    assert len(back) == (0 if qkv_bias else 3 * cfg["n_layers"]) and not any(b.any() for b in back.values())


def test_tied_head_is_stored_once(tmp_path):
    size = SIZES[0]
    ours = gpt_from_hf(hf_model(**size))
    gpt_to_hf(ours, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["tie_word_embeddings"] is True
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")
    theirs = GPT2LMHeadModel.from_pretrained(tmp_path)
    assert theirs.lm_head.weight.data_ptr() == theirs.transformer.wte.weight.data_ptr()
    assert_same_model(ours, theirs, size["vocab_size"], size["n_positions"])


def test_gpt2_sized_export_config(tmp_path):
    "A full-vocabulary model gets GPT-2's <|endoftext|> as bos/eos in config.json."
    cfg = dict(vocab_size=50257, context_length=8, emb_dim=8, n_heads=2, n_layers=1, drop_rate=0.1, qkv_bias=True)
    gpt_to_hf(GPTModel(cfg), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["eos_token_id"] == config["bos_token_id"] == 50256 and config["resid_pdrop"] == 0.1


def test_sources(tmp_path):
    "Every form of source gives the same model: object, state dicts with/without prefix, folder, file, Path."
    size = SIZES[1]
    theirs = hf_model(**size)
    theirs.save_pretrained(tmp_path / "saved")
    sd = theirs.state_dict()
    bare = {k.removeprefix("transformer."): v for k, v in sd.items()}
    # older checkpoints carry each block's causal mask as a buffer: it must be ignored
    legacy = bare | {f"h.{i}.attn.bias": torch.ones(1, 1, 16, 16) for i in range(size["n_layer"])}
    save_file({k: v.contiguous() for k, v in bare.items() if k != "lm_head.weight"}, tmp_path / "bare.safetensors")
    ref = gpt_from_hf(theirs).state_dict()
    with_config = {}  # the head count comes from config.json (folders, files beside one) or from the caller
    sources = [(sd, dict(n_heads=3)), (bare, dict(n_heads=3)), (legacy, dict(n_heads=3)),
               (tmp_path / "saved", with_config), (str(tmp_path / "saved"), with_config),
               (tmp_path / "saved" / "model.safetensors", with_config), (tmp_path / "bare.safetensors", dict(n_heads=3))]
    for i, (source, kwargs) in enumerate(sources):
        got = gpt_from_hf(source, **kwargs).state_dict()
        assert got.keys() == ref.keys()
        for k, v in got.items():
            assert torch.equal(v, ref[k]), (i, k)


def test_released_gpt2_shapes_need_no_head_count():
    "A bare state dict with GPT-2 124M's shapes loads with its known 12 heads (built on the meta device: no memory)."
    from llm_zero.model.hf import _config_from_hf
    with torch.device("meta"):
        sd = {k.removeprefix("transformer."): v for k, v in
              GPT2LMHeadModel(GPT2Config()).state_dict().items()}
    cfg = _config_from_hf(sd, None)
    assert (cfg["n_heads"], cfg["n_layers"], cfg["emb_dim"], cfg["context_length"]) == (12, 12, 768, 1024)


def openai_params(hf):
    "The nested dict the book builds from OpenAI's TensorFlow checkpoint, here from a Hugging Face model."
    t = {k.removeprefix("transformer."): v.numpy() for k, v in hf.state_dict().items()}
    lin = lambda p: {"w": t[p + ".weight"], "b": t[p + ".bias"]}
    norm = lambda p: {"g": t[p + ".weight"], "b": t[p + ".bias"]}
    return {"wte": t["wte.weight"], "wpe": t["wpe.weight"], "g": t["ln_f.weight"], "b": t["ln_f.bias"],
            "blocks": [{"ln_1": norm(f"h.{i}.ln_1"), "ln_2": norm(f"h.{i}.ln_2"),
                        "attn": {"c_attn": lin(f"h.{i}.attn.c_attn"), "c_proj": lin(f"h.{i}.attn.c_proj")},
                        "mlp": {"c_fc": lin(f"h.{i}.mlp.c_fc"), "c_proj": lin(f"h.{i}.mlp.c_proj")}}
                       for i in range(hf.config.n_layer)]}


def book_cfg(size, qkv_bias=True):
    return dict(vocab_size=size["vocab_size"], context_length=size["n_positions"], emb_dim=size["n_embd"],
                n_heads=size["n_head"], n_layers=size["n_layer"], drop_rate=0.0, qkv_bias=qkv_bias)


@pytest.mark.parametrize("size", SIZES[:2], ids=lambda s: f"L{s['n_layer']}H{s['n_head']}")
def test_load_weights_into_gpt(size):
    "OpenAI's layout: same model as Hugging Face's, and the same weights as the book's own loader."
    from llms_from_scratch.ch04 import GPTModel as BookGPTModel
    from llms_from_scratch.ch05 import load_weights_into_gpt as book_load_weights_into_gpt
    theirs = hf_model(**size)
    params = openai_params(theirs)
    ours = load_weights_into_gpt(GPTModel(book_cfg(size)), params)
    assert_same_model(ours, theirs, size["vocab_size"], size["n_positions"])
    book = BookGPTModel(book_cfg(size))
    book_load_weights_into_gpt(book, params)
    book_params = dict(book.named_parameters())
    for name, p in ours.named_parameters():
        assert torch.equal(p, book_params[name]), name


def test_tf_checkpoint(tmp_path):
    "Write a small checkpoint the way OpenAI's files are laid out (model/h0/attn/c_attn/w, conv weights (1, in, out))."
    tf = pytest.importorskip("tensorflow")
    size = SIZES[0]
    theirs = hf_model(**size)
    params = openai_params(theirs)
    flat = {"model/wte": params["wte"], "model/wpe": params["wpe"], "model/ln_f/g": params["g"], "model/ln_f/b": params["b"]}
    for i, block in enumerate(params["blocks"]):
        for path, leaves in [("ln_1", block["ln_1"]), ("ln_2", block["ln_2"]), ("attn/c_attn", block["attn"]["c_attn"]),
                             ("attn/c_proj", block["attn"]["c_proj"]), ("mlp/c_fc", block["mlp"]["c_fc"]),
                             ("mlp/c_proj", block["mlp"]["c_proj"])]:
            for leaf, v in leaves.items():
                flat[f"model/h{i}/{path}/{leaf}"] = v[None] if leaf == "w" else v
    graph = tf.Graph()
    with graph.as_default():
        variables = {name: tf.compat.v1.Variable(v, name=name.replace("/", "_")) for name, v in flat.items()}
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            ckpt = saver.save(sess, str(tmp_path / "model.ckpt"))
    loaded = load_gpt2_params_from_tf_ckpt(ckpt, size["n_layer"])
    ours = load_weights_into_gpt(GPTModel(book_cfg(size)), loaded)
    assert_same_model(ours, theirs, size["vocab_size"], size["n_positions"])


def test_tf_missing_is_explained(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` raise ImportError
    with pytest.raises(ImportError, match=r"needs tensorflow \(pip install tensorflow\)"):
        load_gpt2_params_from_tf_ckpt("gpt2/124M/model.ckpt", 12)


# ---- bad input --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    size = SIZES[0]
    theirs = hf_model(**size)
    return size, {k.removeprefix("transformer."): v for k, v in theirs.state_dict().items()}


def test_wrong_shape_names_tensor_and_both_shapes(small):
    size, sd = small
    bad = sd | {"h.1.attn.c_attn.weight": torch.zeros(24, 60)}
    with pytest.raises(ValueError, match=r"'h\.1\.attn\.c_attn\.weight' has shape \(24, 60\), but the model expects \(24, 72\)"):
        gpt_from_hf(bad, n_heads=4)


def test_wrong_shape_in_openai_layout(small):
    size, _ = small
    params = openai_params(hf_model(**size))
    params["blocks"][1]["mlp"]["c_proj"]["w"] = params["blocks"][1]["mlp"]["c_proj"]["w"].T
    with pytest.raises(ValueError, match=r"params\['blocks'\]\[1\]\['mlp'\]\['c_proj'\]\['w'\] has shape \(24, 96\), "
                                         r"but the model expects \(96, 24\)"):
        load_weights_into_gpt(GPTModel(book_cfg(size)), params)
    with pytest.raises(ValueError, match="qkv_bias=True"):
        load_weights_into_gpt(GPTModel(book_cfg(size, qkv_bias=False)), openai_params(hf_model(**size)))
    del params["blocks"][0]["mlp"]
    with pytest.raises(ValueError, match="params has no entry 'mlp'"):
        load_weights_into_gpt(GPTModel(book_cfg(size)), params)


def test_missing_and_unexpected_tensors(small):
    size, sd = small
    with pytest.raises(ValueError, match=r"missing 'h\.0\.ln_2\.bias'; unexpected none"):
        gpt_from_hf({k: v for k, v in sd.items() if k != "h.0.ln_2.bias"}, n_heads=4)
    deeper = GPTModel(book_cfg(size | {"n_layer": 3}))
    params = openai_params(hf_model(**size))
    with pytest.raises(ValueError, match=r"n_layers=3: missing params\['blocks'\]\[2\]\['ln_1'\]\['g'\], .* and \d+ more; unexpected none"):
        load_weights_into_gpt(deeper, params)
    with pytest.raises(ValueError, match="not a GPT-2 state dict"):
        gpt_from_hf({"weight": torch.zeros(3)})


def test_config_problems(small, tmp_path):
    size, sd = small
    with pytest.raises(ValueError, match="pass n_heads="):
        gpt_from_hf(sd)
    theirs = hf_model(**size)
    theirs.config.activation_function = "relu"
    with pytest.raises(ValueError, match="activation_function='relu'"):
        gpt_from_hf(theirs)
    theirs.config.activation_function, theirs.config.n_inner = "gelu_new", 50
    with pytest.raises(ValueError, match="n_inner=50"):
        gpt_from_hf(theirs)
    with pytest.raises(ValueError, match="n_heads"):  # GPTModel's own config check, reached through an override
        gpt_from_hf(sd, n_heads=5)


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        gpt_from_hf(tmp_path / "nothing.safetensors")
    with pytest.raises(FileNotFoundError, match="no such file"):
        gpt_from_hf("./nothing-here")
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        gpt_from_hf(tmp_path)
    with pytest.raises(TypeError, match="not int"):
        gpt_from_hf(42)


def test_hub_offline_error(monkeypatch):
    "A name that is not a local path goes to the hub; offline, the error says what to do instead."
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never touch the network in tests
    with pytest.raises(OSError, match="could not fetch 'llm-zero-tests/no-such-model' from the Hugging Face hub.*"
                                      "pass a folder with config.json and model.safetensors"):
        gpt_from_hf("llm-zero-tests/no-such-model")


# ---- property: any valid shape converts exactly ----------------------------------------------

@settings(max_examples=8, deadline=None)
@given(n_layer=st.integers(1, 3), n_head=st.integers(1, 4), head_dim=st.integers(1, 8),
       vocab_size=st.integers(2, 80), n_positions=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_roundtrip_property(n_layer, n_head, head_dim, vocab_size, n_positions, seed):
    size = dict(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_head * head_dim, n_head=n_head, n_layer=n_layer)
    theirs = hf_model(seed, **size)
    ours = gpt_from_hf(theirs)
    idx = torch.randint(0, vocab_size, (2, n_positions))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), theirs(idx).logits, atol=1e-5, rtol=0)
