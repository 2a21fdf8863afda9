"""The child networks a rule is trained on: the NOS ConvNet, Wide ResNet, and a small NMT Transformer.

* `ConvNet`: the child network of Neural Optimizer Search, two 3x3 conv layers of 32 filters with batch
  norm and ReLU after each and a linear head. It adapts to the input's channels and size (1x8x8 digits,
  3x32x32 CIFAR-10); the width is configurable for cheaper proxies.
* `WideResNet`: WRN-d-k (Zagoruyko & Komodakis 2016) with pre-activation basic blocks, depth 6n+4,
  three groups of widths 16k, 32k, 64k after a 16-filter stem, optional dropout between the convs.
* `TranslationTransformer`: a small pre-norm encoder-decoder for NMT with greedy decoding.
* `ConvNet1D` and `MLP`: the MNIST-1D paper's small 1D ConvNet (three strided convs of 25 channels) and
  its MLP (two hidden layers of 100), with sizes from the task config.
* `RecurrentNet` and `CausalTransformerLM`: the held-out panel's recurrent network (an LSTM or GRU read
  out from its last state, a regressor or a classifier) and its small decoder-only language model.

Token ids follow child_tasks/translation.py: PAD=0, BOS=1, EOS=2. They are repeated here rather than
imported so that the models stand alone (the data module may change without touching the networks).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PAD, BOS, EOS = 0, 1, 2


class ConvNet(nn.Module):
    """NOS's child network: [conv3x3(width) - BN - ReLU] x 2, then a linear head over all positions.

    Convs have no bias: batch norm right after them would cancel it.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, width: int = 32) -> None:
        super().__init__()
        channels, height, width_px = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        )
        # Padding 1 keeps the spatial size, so the head sees width * H * W features.
        self.head = nn.Linear(width * height * width_px, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class ConvNet1D(nn.Module):
    """The MNIST-1D paper's CNN: conv(k5, s2) - ReLU - [conv(k3, s2) - ReLU] x 2 - linear, on (N, C, L).

    About 5k parameters at width 25 on 40-sample signals; no batch norm, as in the paper, so the
    optimizer alone carries the conditioning.
    """

    def __init__(self, input_shape: tuple[int, int], num_classes: int, width: int = 25) -> None:
        super().__init__()
        channels, length = input_shape
        self.features = nn.Sequential(
            nn.Conv1d(channels, width, 5, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1), nn.ReLU(),
        )
        for kernel in (5, 3, 3):  # each strided conv: floor((L + 2 - k) / 2) + 1 positions
            length = (length + 2 - kernel) // 2 + 1
        self.head = nn.Linear(width * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class MLP(nn.Module):
    """A ReLU MLP over the flattened input: ``layers`` hidden layers of ``hidden`` units."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: int = 100,
                 layers: int = 2) -> None:
        super().__init__()
        width, blocks = math.prod(input_shape), []
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.net = nn.Sequential(nn.Flatten(), *blocks, nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _PreActBlock(nn.Module):
    """BN-ReLU-conv-BN-ReLU-(dropout)-conv, with a 1x1 projection shortcut where the shape changes."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut = None
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # The projection reads the pre-activated input, as in the WRN reference code.
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = F.relu(self.bn2(out))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return self.conv2(out) + shortcut


class WideResNet(nn.Module):
    """WRN-depth-widen: a 3x3 stem of 16 filters, three groups of n = (depth-4)/6 blocks at widths
    16k, 32k, 64k (strides 1, 2, 2), a final BN-ReLU, global average pooling and a linear head."""

    def __init__(self, depth: int = 16, widen: int = 4, num_classes: int = 10, in_channels: int = 3,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"Wide ResNet depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), "
                             f"got {depth}")
        if widen < 1:
            raise ValueError(f"Wide ResNet widening factor must be >= 1, got {widen}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        for group, stride in zip(range(3), (1, 2, 2)):
            for i in range(n):
                blocks.append(_PreActBlock(widths[group] if i == 0 else widths[group + 1], widths[group + 1],
                                           stride if i == 0 else 1, dropout))
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(widths[3])
        self.head = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return self.head(out.mean(dim=(2, 3)))


class TranslationTransformer(nn.Module):
    """A small pre-norm Transformer encoder-decoder with shared-nothing embeddings.

    Inputs are (N, L) id tensors padded with PAD; the target fed to the decoder starts with BOS.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 64, heads: int = 4, layers: int = 2,
                 ff: int | None = None, dropout: float = 0.1, max_len: int = 128) -> None:
        super().__init__()
        if d_model % heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        ff = 4 * d_model if ff is None else ff
        self.d_model, self.max_len = d_model, max_len
        self.src_embed = nn.Embedding(src_vocab, d_model, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(tgt_vocab, d_model, padding_idx=PAD)
        # Fixed sinusoidal positions: nothing for the optimizer to learn, the same for every rule.
        self.register_buffer("positions", _sinusoids(max_len, d_model), persistent=False)
        enc_layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=True)
        dec_layer = nn.TransformerDecoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=True)
        # No nested tensors: they take a different (inference-only) path, and results must not depend on it.
        self.encoder = nn.TransformerEncoder(enc_layer, layers, norm=nn.LayerNorm(d_model),
                                             enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec_layer, layers, norm=nn.LayerNorm(d_model))
        self.out = nn.Linear(d_model, tgt_vocab)

    def _embed(self, embed: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.max_len:
            raise ValueError(f"sequence of length {ids.shape[1]} is longer than max_len={self.max_len}")
        return embed(ids) * math.sqrt(self.d_model) + self.positions[: ids.shape[1]]

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pad = src == PAD
        return self.encoder(self._embed(self.src_embed, src), src_key_padding_mask=pad), pad

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor) -> torch.Tensor:
        length = tgt_in.shape[1]
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=tgt_in.device), 1)
        out = self.decoder(self._embed(self.tgt_embed, tgt_in), memory, tgt_mask=causal,
                           tgt_key_padding_mask=tgt_in == PAD, memory_key_padding_mask=memory_pad)
        return self.out(out)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Logits (N, L, tgt_vocab) for the next token at each position of ``tgt_in`` (teacher forcing)."""
        memory, pad = self.encode(src)
        return self.decode(tgt_in, memory, pad)

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
        """Greedy translation: (N, <= max_len) ids without BOS, each row ending at its first EOS and
        padded with PAD after it. Stops as soon as every row has produced EOS."""
        max_len = min(self.max_len - 1, max_len or self.max_len - 1)
        memory, pad = self.encode(src)
        ys = torch.full((src.shape[0], 1), BOS, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            # Re-decoding the whole prefix each step is quadratic, and fine for the short sentences here.
            next_ids = self.decode(ys, memory, pad)[:, -1].argmax(-1)
            next_ids = next_ids.masked_fill(done, PAD)
            ys = torch.cat([ys, next_ids[:, None]], dim=1)
            done |= next_ids == EOS
            if bool(done.all()):
                break
        return ys[:, 1:]


class RecurrentNet(nn.Module):
    """An LSTM or GRU over (N, L, features) sequences with a linear read-out of the last step's hidden
    state: one value per sequence (N,) when ``classes`` is 0 (regression), else logits (N, classes)."""

    def __init__(self, features: int, hidden: int = 32, layers: int = 1, cell: str = "lstm",
                 classes: int = 0) -> None:
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        if classes < 0 or classes == 1:
            raise ValueError(f"classes must be 0 (regression) or at least 2, got {classes}")
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, classes or 1)
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        out = self.head(out[:, -1])
        return out if self.classes else out.squeeze(-1)


class _CausalBlock(nn.Module):
    """Pre-norm self-attention (causal) and a GELU feed-forward, each added back to its input."""

    def __init__(self, d_model: int, heads: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.proj = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff), nn.GELU(), nn.Linear(ff, d_model))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n, length, width = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        h = h + F.dropout(self.proj(attended.transpose(1, 2).reshape(n, length, width)), p, self.training)
        return h + F.dropout(self.ff(self.norm2(h)), p, self.training)


class CausalTransformerLM(nn.Module):
    """A small pre-norm decoder-only Transformer: logits (N, L, vocab) for the next token at each position
    of (N, L) ids. Sentences are padded at the end only, so under the causal mask a real token never
    attends to PAD: no padding mask is needed (what PAD positions predict is left out of the loss)."""

    def __init__(self, vocab: int, d_model: int = 32, heads: int = 2, layers: int = 2, ff: int | None = None,
                 dropout: float = 0.0, max_len: int = 64) -> None:
        super().__init__()
        if d_model % heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        ff = 4 * d_model if ff is None else ff
        self.d_model, self.max_len = d_model, max_len
        self.embed = nn.Embedding(vocab, d_model, padding_idx=PAD)
        self.register_buffer("positions", _sinusoids(max_len, d_model), persistent=False)
        self.blocks = nn.Sequential(*(_CausalBlock(d_model, heads, ff, dropout) for _ in range(layers)))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.max_len:
            raise ValueError(f"sequence of length {ids.shape[1]} is longer than max_len={self.max_len}")
        h = self.embed(ids) * math.sqrt(self.d_model) + self.positions[:ids.shape[1]]
        return self.out(self.norm(self.blocks(h)))


def _sinusoids(length: int, dim: int) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
