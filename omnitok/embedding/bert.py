"""A BERT encoder in plain torch, for the ONNX export only: the layers of transformers' BertModel
(embeddings with token type 0 and absolute positions, post-norm layers, erf GELU), its weights
read from the model's safetensors, without importing transformers (~3 s of CPU of the ~8 s a
first export took). The traced graph has the ops transformers' eager (or sdpa) attention exports,
so ONNX Runtime's BERT optimizer fuses it alike ("fused": one Attention, BiasGelu each layer).
The mask is BERT's classic additive one, (1 - mask) * MASKED, on every key.

`load(model_dir, layers, attention)` gives the module, or None where the model is not one this
reproduces exactly (another model_type or activation, relative positions, weights not in
safetensors or under other names): the caller then loads it through transformers."""

from __future__ import annotations

import json
import math
from pathlib import Path

SUPPORTED = {"model_type": "bert", "hidden_act": "gelu"}
# what a masked key adds to its score: float32's lowest, as transformers adds it; in the eager
# graph (the fused export's) -10000, ONNX Runtime's Attention default, so that the fused graph is
# the one transformers' export gave (no mask_filter_value). exp() is 0 in float32 either way.
MASKED = {"sdpa": -3.4028234663852886e38, "eager": -10000.0}


def load(model_dir: Path, layers: int, attention: str | None = None):
    """BERT's first `layers` layers in fp32 and eval mode, or None (see the module's docstring)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    if any(config.get(k) != v for k, v in SUPPORTED.items()) or config.get("is_decoder"):
        return None
    if config.get("position_embedding_type", "absolute") != "absolute":
        return None
    need = ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size")
    if any(not isinstance(config.get(k), int) for k in (*need, "max_position_embeddings")):
        return None  # transformers' defaults for what is left out: its own loading applies them
    if config.get("embedding_size", config["hidden_size"]) != config["hidden_size"]:
        return None
    total = config["num_hidden_layers"]
    if not 0 < layers <= total:
        from ..errors import UsageError

        raise UsageError(f"num_layers must be 1..{total} for {model_dir}")  # as torch_backend.load_model
    weights = sorted(Path(model_dir).glob("*.safetensors"))
    if len(weights) != 1 or list(Path(model_dir).glob("*.bin")):
        return None
    import torch
    from safetensors.torch import load_file

    state = load_file(str(weights[0]))
    if "embeddings.word_embeddings.weight" not in state:
        prefix = "bert."
        if prefix + "embeddings.word_embeddings.weight" not in state:
            return None
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    model = _model(torch, config, layers, attention or "sdpa")
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in state]
    if missing or any(state[k].shape != v.shape for k, v in wanted.items()):
        return None
    model.load_state_dict({k: state[k].to(torch.float32) for k in wanted})
    return model.eval()


def _model(torch, config: dict, layers: int, attention: str):
    nn, F = torch.nn, torch.nn.functional
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    head_size = hidden // heads
    scaling = head_size**-0.5

    class Embeddings(nn.Module):
        def __init__(self):
            super().__init__()
            self.word_embeddings = nn.Embedding(int(config["vocab_size"]), hidden)
            self.position_embeddings = nn.Embedding(int(config["max_position_embeddings"]), hidden)
            self.token_type_embeddings = nn.Embedding(int(config.get("type_vocab_size", 2)), hidden)
            self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
            # positions and token types as transformers' buffers: the pattern of ONNX Runtime's
            # EmbedLayerNormalization fusion
            positions = torch.arange(int(config["max_position_embeddings"])).expand((1, -1))
            self.register_buffer("position_ids", positions, persistent=False)
            self.register_buffer("token_type_ids", torch.zeros(positions.size(), dtype=torch.long), persistent=False)

        def forward(self, input_ids):
            batch, n = input_ids.shape
            positions = self.position_ids[:, 0:n]
            types = torch.gather(self.token_type_ids.expand(positions.shape[0], -1), dim=1, index=positions)
            x = self.word_embeddings(input_ids) + self.token_type_embeddings(types.expand(batch, n))
            return self.LayerNorm(x + self.position_embeddings(positions))

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))

        def forward(self, x, mask):
            shape = (*x.shape[:-1], -1, head_size)
            q, k, v = (f(x).view(shape).transpose(1, 2) for f in (self.query, self.key, self.value))
            if attention == "eager":
                # divided, not multiplied by `scaling`: the Mul of the mask stays the only Mul before
                # the Add, the pattern ONNX Runtime's attention fusion matches
                weights = F.softmax(torch.matmul(q, k.transpose(2, 3)) / math.sqrt(head_size) + mask, dim=-1)
                out = torch.matmul(weights, v)
            else:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling)
            return out.transpose(1, 2).reshape(*x.shape[:-1], -1)

    class Output(nn.Module):
        def __init__(self, d_in):
            super().__init__()
            self.dense = nn.Linear(d_in, hidden)
            self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

        def forward(self, x, residual):
            return self.LayerNorm(self.dense(x) + residual)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.self = SelfAttention()
            self.output = Output(hidden)

        def forward(self, x, mask):
            return self.output(self.self(x, mask), x)

    class Intermediate(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(hidden, int(config["intermediate_size"]))

        def forward(self, x):
            return F.gelu(self.dense(x))

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = Attention()
            self.intermediate = Intermediate()
            self.output = Output(int(config["intermediate_size"]))

        def forward(self, x, mask):
            x = self.attention(x, mask)
            return self.output(self.intermediate(x), x)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.ModuleList(Layer() for _ in range(layers))

    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = Embeddings()
            self.encoder = Encoder()

        def forward(self, input_ids, attention_mask):
            mask = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * MASKED[
                "eager" if attention == "eager" else "sdpa"
            ]
            x = self.embeddings(input_ids)
            for layer in self.encoder.layer:
                x = layer(x, mask)
            return (x,)  # as transformers' output: the last hidden state first

    return Bert()
